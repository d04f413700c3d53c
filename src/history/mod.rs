//! The history that every monthly run remembers: one storage module over an
//! embedded SQLite database (`--history FILE`).
//!
//! Everything the rest of porledger knows about the history goes through the
//! [`History`] type and the plain records of this module: no SQL leaves it.
//! A shared PostgreSQL history later is a second implementation of the same
//! calls, not a rewrite of the commands.
//!
//! # What is stored (schema version [`SCHEMA_VERSION`])
//!
//! - `closes`: one row per issued version of a period (`period`, `version`
//!   1, 2, ...), with the SHA-256 of the run's `manifest.json`, the version it
//!   restates and its counts;
//! - `inputs` and `outputs`: the manifest's files with their SHA-256s;
//! - `statement_lines` / `statement_totals`: the issued statements per
//!   partner, customer, program, accrual month and currency;
//! - `designations`: the designation rows each customer statement showed;
//! - `accrual_blocks`: the ledger rows of the period at ledger grain, with
//!   their source line key (file, line; reference, product and SKU IDs and
//!   charge dates where the run recorded them) for matching later credits,
//!   stored as compressed blocks of a few hundred rows (`block.rs`; read
//!   through this module, not with plain SQL); `charge_keys` and
//!   `charge_filters` find a credit's charge (reference IDs folded to one
//!   letter case, see `SCHEMA_V4`; subscription, product and SKU IDs too,
//!   see `SCHEMA_V5`), `reversals` the credits already taken from it (see
//!   `SCHEMA_V3`);
//! - `usage_marks`: the monthly active users per tenant, workload and month,
//!   from which the usage high-water marks of later months are computed.
//!
//! # Safety of the file
//!
//! [`probe`] reads the first 100 bytes of an existing file before SQLite ever
//! opens it: a file that is not SQLite, a SQLite database of another
//! application (`PRAGMA application_id`) or of a newer schema
//! (`PRAGMA user_version`) is refused and never modified. Writes happen in
//! one `BEGIN IMMEDIATE` transaction (WAL journal, `synchronous=FULL`): a
//! close killed at any point leaves the database as it was, and a second
//! writer waits up to `busy_timeout` and then fails with a clear error.

pub mod adjust;
mod block;
mod filter;
pub mod reverse;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

use crate::money::ExactArith;

/// `PRAGMA application_id` of a porledger history: "PORL" in ASCII.
pub const APPLICATION_ID: i32 = 0x504F_524C;

/// The schema version this build reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = 5;

/// Why the history cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{path}: not a porledger history ({why}); the file was not modified")]
    Foreign { path: String, why: String },
    #[error("{path}: history schema version {found} is newer than this porledger understands ({SCHEMA_VERSION}); use a newer porledger. The file was not modified")]
    Newer { path: String, found: i32 },
    #[error("{path}: the history is in use by another porledger process (waited {waited_s} s); try again when it has finished")]
    Busy { path: String, waited_s: u64 },
    #[error("{path}: {message}")]
    Refused { path: String, message: String },
    #[error("{path}: {}", sqlite_message(source))]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What [`probe`] found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// No file: `close` creates it; readers see an empty history.
    Missing,
    /// An empty file, or an SQLite database without an application id or
    /// schema version: `close` takes it only if it holds no table.
    Blank,
    /// A porledger history of this schema version or an older one.
    Ours { version: i32 },
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Looks at `path` without opening it with SQLite: refuses anything that is
/// not a porledger history this build understands.
pub fn probe(path: &Path) -> Result<Probe, HistoryError> {
    let show = path.display().to_string();
    // Looked at before it is opened: opening a FIFO waits for a writer that
    // may never come, and a device never ends.
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Probe::Missing),
        Err(e) => {
            return Err(HistoryError::Io {
                path: show,
                source: e,
            })
        }
        Ok(m) if m.is_dir() => {
            return Err(HistoryError::Foreign {
                path: show,
                why: "it is a directory".into(),
            })
        }
        Ok(m) if !m.is_file() => {
            return Err(HistoryError::Foreign {
                path: show,
                why: format!("it is {}", crate::ingest::kind_of(&m)),
            })
        }
        Ok(_) => {}
    }
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Probe::Missing),
        Err(e) => {
            return Err(HistoryError::Io {
                path: show,
                source: e,
            })
        }
    };
    let meta = f.metadata().map_err(|e| HistoryError::Io {
        path: show.clone(),
        source: e,
    })?;
    // Replaced between the look and the open: looked at again.
    if !meta.is_file() {
        return Err(HistoryError::Foreign {
            path: show,
            why: "not a regular file".into(),
        });
    }
    let mut head = Vec::with_capacity(100);
    f.by_ref()
        .take(100)
        .read_to_end(&mut head)
        .map_err(|e| HistoryError::Io {
            path: show.clone(),
            source: e,
        })?;
    if head.is_empty() {
        return Ok(Probe::Blank);
    }
    if head.len() < 100 || &head[..16] != SQLITE_MAGIC {
        return Err(HistoryError::Foreign {
            path: show,
            why: "not an SQLite database".into(),
        });
    }
    let be = |at: usize| i32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    let (user_version, app) = (be(60), be(68));
    if app == 0 && user_version == 0 {
        return Ok(Probe::Blank);
    }
    if app != APPLICATION_ID {
        return Err(HistoryError::Foreign {
            path: show,
            why: format!("an SQLite database with application_id {app:#x}, not porledger's"),
        });
    }
    if user_version > SCHEMA_VERSION {
        return Err(HistoryError::Newer {
            path: show,
            found: user_version,
        });
    }
    if user_version < 0 {
        return Err(HistoryError::Foreign {
            path: show,
            why: format!(
                "porledger's application_id with the schema version {user_version}, which no \
                 porledger writes: the file is damaged or was written by another program"
            ),
        });
    }
    Ok(Probe::Ours {
        version: user_version,
    })
}

/// What `run --history` writes into `manifest.json` under `"history"`, for
/// `close` to read: which history the run was computed against, and the
/// exact issued version it restates. `close` records the run only into a
/// history whose first closes are the ones the run read (closes are only
/// ever appended: a copy or another history holds other ones), so that the
/// adjustments it publishes are against the version it replaces there.
///
/// A manifest of an older porledger has only `restates` (or nothing): see
/// [`check_close`] for what `close` does with it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunHistory {
    /// The history file as `--history` named it (for messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// How many closes the history held when the run read it
    /// ([`Seen::closes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes: Option<u64>,
    /// The SHA-256 of those closes ([`Seen::sha256`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closes_sha256: Option<String>,
    /// The issued version this run restates (the period was closed when the
    /// run read the history), none when the period was open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restates: Option<u32>,
    /// The SHA-256 of the restated version's `manifest.json`, as its close
    /// recorded it: which version, not only its number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restates_manifest_sha256: Option<String>,
}

impl RunHistory {
    /// What a run records of a history that does not exist yet (or holds
    /// nothing): no closes, nothing restated.
    pub fn empty() -> RunHistory {
        let seen = seen_of(&[]);
        RunHistory {
            closes: Some(seen.closes),
            closes_sha256: Some(seen.sha256),
            ..RunHistory::default()
        }
    }
}

/// The closes of a history as a run saw them: how many, and the SHA-256 of
/// their list in the order recorded, one line `PERIOD<TAB>VERSION<TAB>
/// MANIFEST_SHA256<LF>` each (an empty history: the SHA-256 of nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub closes: u64,
    pub sha256: String,
}

/// One issued version of a period.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CloseInfo {
    pub period: String,
    pub version: u32,
    /// The version this one restates (`version - 1`), none for the first.
    pub restates: Option<u32>,
    pub manifest_sha256: String,
    pub tool_version: String,
    pub rounding: String,
    pub accruals: u64,
    pub partners: u64,
}

/// One input or output file of a closed run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FileRec {
    pub path: String,
    pub role: String,
    pub sha256: String,
    pub bytes: u64,
}

/// One issued statement line: the grain of adjustments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRec {
    pub partner_id: String,
    pub partner_name: String,
    pub customer_id: String,
    pub customer_name: String,
    pub program_id: String,
    /// `YYYY-MM`, or empty when the run did not split lines by month.
    pub accrual_month: String,
    pub currency: String,
    pub lines: u64,
    /// Exact decimals, as text.
    pub basis: String,
    pub amount: String,
}

/// A partner's issued total in one currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TotalRec {
    pub partner_id: String,
    pub partner_name: String,
    pub currency: String,
    pub amount: String,
}

/// A designation row shown on an issued customer statement.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DesignationRec {
    pub partner_id: String,
    pub customer_id: String,
    pub association: String,
    pub subscription_id: String,
    pub workload: String,
    pub share: String,
    pub valid_from: String,
    pub valid_to: String,
    pub source_line: u64,
}

/// One accrual at ledger grain.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccrualRec {
    pub partner_id: String,
    pub customer_id: String,
    pub program_id: String,
    pub association: String,
    pub subscription_id: String,
    pub charge_date: String,
    pub accrual_month: String,
    pub source_file: String,
    pub source_line: u64,
    /// Source line keys for matching credits; `None` where the run did not
    /// record them.
    pub reference_id: Option<String>,
    pub product_id: Option<String>,
    pub sku_id: Option<String>,
    pub charge_start: Option<String>,
    pub charge_end: Option<String>,
    pub basis: String,
    pub rate: String,
    pub share: String,
    pub amount: String,
    pub currency: String,
    pub designation_line: Option<u64>,
    /// The billing line's whole amount (its `Subtotal`), exact text: what a
    /// later credit is a proportion of. `None` where the run did not record
    /// source keys, or in a schema version 1 history.
    pub line_amount: Option<String>,
    /// For a reversal row: the closed accrual it reverses,
    /// `PERIOD vVERSION FILE:LINE`; `None` for every other row.
    pub reverses: Option<String>,
}

/// An accrual as [`AccrualEncoder::push`] takes it: the fields of an
/// [`AccrualRec`], borrowed, so that `close` hands each ledger row over
/// without copying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccrualView<'a> {
    pub partner_id: &'a str,
    pub customer_id: &'a str,
    pub program_id: &'a str,
    pub association: &'a str,
    pub subscription_id: &'a str,
    pub charge_date: &'a str,
    pub accrual_month: &'a str,
    pub source_file: &'a str,
    pub source_line: u64,
    pub reference_id: Option<&'a str>,
    pub product_id: Option<&'a str>,
    pub sku_id: Option<&'a str>,
    pub charge_start: Option<&'a str>,
    pub charge_end: Option<&'a str>,
    pub basis: &'a str,
    pub rate: &'a str,
    pub share: &'a str,
    pub amount: &'a str,
    pub currency: &'a str,
    pub designation_line: Option<u64>,
    pub line_amount: Option<&'a str>,
    pub reverses: Option<&'a str>,
}

impl AccrualRec {
    pub fn view(&self) -> AccrualView<'_> {
        AccrualView {
            partner_id: &self.partner_id,
            customer_id: &self.customer_id,
            program_id: &self.program_id,
            association: &self.association,
            subscription_id: &self.subscription_id,
            charge_date: &self.charge_date,
            accrual_month: &self.accrual_month,
            source_file: &self.source_file,
            source_line: self.source_line,
            reference_id: self.reference_id.as_deref(),
            product_id: self.product_id.as_deref(),
            sku_id: self.sku_id.as_deref(),
            charge_start: self.charge_start.as_deref(),
            charge_end: self.charge_end.as_deref(),
            basis: &self.basis,
            rate: &self.rate,
            share: &self.share,
            amount: &self.amount,
            currency: &self.currency,
            designation_line: self.designation_line,
            line_amount: self.line_amount.as_deref(),
            reverses: self.reverses.as_deref(),
        }
    }
}

/// A recorded accrual of a closed period, with the issued version it
/// belongs to (the latest of its period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedAccrual {
    pub period: String,
    pub version: u32,
    pub accrual: AccrualRec,
}

/// An issued accrual as [`History::issued_accruals`] streams it: the
/// columns a tie-out needs, borrowed from the row being read (nothing is
/// copied per row).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssuedRow<'a> {
    /// The issued version the row belongs to.
    pub period: &'a str,
    pub version: u32,
    pub partner_id: &'a str,
    pub customer_id: &'a str,
    pub program_id: &'a str,
    pub association: &'a str,
    pub subscription_id: &'a str,
    pub charge_date: &'a str,
    /// `YYYY-MM`, or empty where the run did not split by month.
    pub accrual_month: &'a str,
    pub source_file: &'a str,
    pub source_line: u64,
    /// Exact decimals, as text.
    pub basis: &'a str,
    pub rate: &'a str,
    pub share: &'a str,
    pub amount: &'a str,
    pub currency: &'a str,
}

/// Monthly active users of one tenant and workload in one month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageMark {
    pub customer_id: String,
    pub workload: String,
    /// `YYYY-MM`.
    pub month: String,
    /// An exact count, as text.
    pub mau: String,
}

/// Everything `close` records for one version of a period, except the
/// accruals, which are streamed.
#[derive(Debug, Clone, Default)]
pub struct CloseRecord {
    pub period: String,
    pub manifest_sha256: String,
    pub tool_version: String,
    pub rounding: String,
    /// The manifest's `"history"`: what the run read of its `--history`
    /// and the version it restates; `None` for a run without `--history`.
    pub run: Option<RunHistory>,
    pub inputs: Vec<FileRec>,
    pub outputs: Vec<FileRec>,
    pub lines: Vec<LineRec>,
    pub totals: Vec<TotalRec>,
    pub designations: Vec<DesignationRec>,
    pub usage: Vec<UsageMark>,
}

impl CloseRecord {
    /// The version the run says it restates (it read the history and found
    /// the period closed at this version); `None` for a first close.
    pub fn restates(&self) -> Option<u32> {
        self.run.as_ref().and_then(|r| r.restates)
    }
}

/// An open history.
pub struct History {
    conn: Connection,
    path: PathBuf,
    /// How long a writer waits for another one.
    wait: Duration,
    /// The schema version of the file: [`SCHEMA_VERSION`] once written by
    /// this build; an older one when opened read-only (its readers then
    /// return `None` for the columns it lacks).
    schema: i32,
    /// The key filters of the closes asked so far (a close never changes):
    /// `None` when a close has none.
    filters: std::cell::RefCell<BTreeMap<i64, Option<CloseFilters>>>,
    /// The charges of the closes asked so far under a subscription, product
    /// and SKU key (all spellings looked up), whatever their dates: credits
    /// without a ReferenceId of one subscription (an Azure plan's daily
    /// lines) ask the same key again and again, and decoding every charge
    /// under it for each credit made a run's time grow as credits x charges.
    charges: std::cell::RefCell<ChargesByKey>,
}

/// [`History::charges`]: by close, whether the stored keys are prefixes
/// (see [`History::stored_keys`]) and the spellings of one key.
type ChargesByKey = std::collections::HashMap<(i64, bool, Vec<Vec<u8>>), Vec<CachedCharge>>;

/// A close's key filters: references, and subscription + product + SKU.
type CloseFilters = (filter::KeyFilter, filter::KeyFilter);

/// One charge under a key, as [`History::charges`] keeps it: its charge
/// dates (`None`: its head has none, so no credit matches it) and its
/// accruals, head first.
#[derive(Debug)]
struct CachedCharge {
    dates: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    accruals: Vec<ClosedAccrual>,
}

const SCHEMA_V1: &str = "
CREATE TABLE migrations(version INTEGER PRIMARY KEY, description TEXT NOT NULL);
CREATE TABLE closes(
  id INTEGER PRIMARY KEY,
  period TEXT NOT NULL,
  version INTEGER NOT NULL,
  restates INTEGER,
  manifest_sha256 TEXT NOT NULL,
  tool_version TEXT NOT NULL,
  rounding TEXT NOT NULL,
  accruals INTEGER NOT NULL,
  partners INTEGER NOT NULL,
  UNIQUE(period, version));
CREATE TABLE inputs(close_id INTEGER NOT NULL REFERENCES closes(id), path TEXT NOT NULL,
  role TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL);
CREATE INDEX inputs_close ON inputs(close_id);
CREATE TABLE outputs(close_id INTEGER NOT NULL REFERENCES closes(id), path TEXT NOT NULL,
  sha256 TEXT NOT NULL, bytes INTEGER NOT NULL);
CREATE INDEX outputs_close ON outputs(close_id);
CREATE TABLE statement_lines(close_id INTEGER NOT NULL REFERENCES closes(id),
  partner_id TEXT NOT NULL, partner_name TEXT NOT NULL, customer_id TEXT NOT NULL,
  customer_name TEXT NOT NULL, program_id TEXT NOT NULL, accrual_month TEXT NOT NULL,
  currency TEXT NOT NULL, lines INTEGER NOT NULL, basis TEXT NOT NULL, amount TEXT NOT NULL);
CREATE INDEX statement_lines_close ON statement_lines(close_id, partner_id);
CREATE TABLE statement_totals(close_id INTEGER NOT NULL REFERENCES closes(id),
  partner_id TEXT NOT NULL, partner_name TEXT NOT NULL, currency TEXT NOT NULL, amount TEXT NOT NULL);
CREATE INDEX statement_totals_close ON statement_totals(close_id, partner_id);
CREATE TABLE designations(close_id INTEGER NOT NULL REFERENCES closes(id),
  partner_id TEXT NOT NULL, customer_id TEXT NOT NULL, association TEXT NOT NULL,
  subscription_id TEXT NOT NULL, workload TEXT NOT NULL, share TEXT NOT NULL,
  valid_from TEXT NOT NULL, valid_to TEXT NOT NULL, source_line INTEGER NOT NULL);
CREATE INDEX designations_close ON designations(close_id, customer_id);
CREATE TABLE accruals(close_id INTEGER NOT NULL REFERENCES closes(id),
  partner_id TEXT NOT NULL, customer_id TEXT NOT NULL, program_id TEXT NOT NULL,
  association TEXT NOT NULL, subscription_id TEXT NOT NULL, charge_date TEXT NOT NULL,
  accrual_month TEXT NOT NULL, source_file TEXT NOT NULL, source_line INTEGER NOT NULL,
  reference_id TEXT, product_id TEXT, sku_id TEXT, charge_start TEXT, charge_end TEXT,
  basis TEXT NOT NULL, rate TEXT NOT NULL, share TEXT NOT NULL, amount TEXT NOT NULL,
  currency TEXT NOT NULL, designation_line INTEGER);
CREATE INDEX accruals_reference ON accruals(reference_id) WHERE reference_id IS NOT NULL;
CREATE INDEX accruals_subscription ON accruals(subscription_id, product_id, sku_id);
CREATE TABLE usage_marks(customer_id TEXT NOT NULL, workload TEXT NOT NULL,
  month TEXT NOT NULL, mau TEXT NOT NULL, close_id INTEGER NOT NULL REFERENCES closes(id),
  PRIMARY KEY(customer_id, workload, month)) WITHOUT ROWID;
";

/// Version 2: credits against closed months. Each accrual keeps the whole
/// amount of its billing line (a credit reverses a proportion of it) and,
/// for a reversal row, which closed accrual it reverses.
///
/// A billing line's accruals are recorded as one run of consecutive rows.
/// Only the first row of the run (the charge's *head*) carries the line's
/// source keys (reference, product, SKU, charge dates) and `charge_rows`,
/// the length of the run, so the history stores each key once per billing
/// line, not once per accrual.
///
/// The heads are found through two key tables, not indexes on `accruals`:
/// `charge_references` and `charge_subscriptions` hold each head's keys and
/// rowid, ordered by close first. A close fills its part of both from its own
/// rows *after* they are inserted, sorted by key, so each is built by
/// appending at the end of its B-tree (an index on `accruals` would take a
/// million random inserts per close, which cost a 1M-row close about 40 %
/// of its time). A missing SKU is stored as '' (key columns cannot be NULL);
/// the head row itself says what was recorded. `charge_filters` holds a
/// Bloom filter of each close's keys (see `filter.rs`): a credit seeks only
/// the closes whose filter may hold its key.
const SCHEMA_V2: &str = "
ALTER TABLE accruals ADD COLUMN line_amount TEXT;
ALTER TABLE accruals ADD COLUMN reverses TEXT;
ALTER TABLE accruals ADD COLUMN charge_rows INTEGER;
DROP INDEX accruals_reference;
DROP INDEX accruals_subscription;
CREATE TABLE charge_references(close_id INTEGER NOT NULL, reference_id TEXT NOT NULL,
  head INTEGER NOT NULL, PRIMARY KEY(close_id, reference_id, head)) WITHOUT ROWID;
CREATE TABLE charge_subscriptions(close_id INTEGER NOT NULL, subscription_id TEXT NOT NULL,
  product_id TEXT NOT NULL, sku_id TEXT NOT NULL, head INTEGER NOT NULL,
  PRIMARY KEY(close_id, subscription_id, product_id, sku_id, head)) WITHOUT ROWID;
CREATE TABLE charge_filters(close_id INTEGER PRIMARY KEY REFERENCES closes(id),
  references_filter BLOB NOT NULL, subscriptions_filter BLOB NOT NULL);
CREATE INDEX accruals_reverses ON accruals(reverses) WHERE reverses IS NOT NULL;
";

/// Version 3: a close's accruals as compressed blocks of rows (see
/// `block.rs`), not one SQL row each: a 1M-row close took twice as long as
/// its run, most of it SQLite's per-row work.
///
/// - `accrual_blocks`: the close's accruals in recorded order, a few hundred
///   rows per blob; `first` is the ordinal (from 0, within the close) of the
///   block's first row. A billing line's accruals (a *run*) never straddle
///   two blocks.
/// - `charge_keys`: the key tables of version 2 as sorted, blocked key
///   lists: `kind` 0 holds reference IDs, 1 subscription + product + SKU
///   (the parts joined by the byte 0xff, which UTF-8 never contains); each
///   entry is a key and the ordinal of the head of its run. Blocks are
///   numbered (`seq`) in key order and hold at most a few hundred entries,
///   so one key's entries may run over several blocks: a look-up reads the
///   blocks from the last one starting below the key to the last one
///   starting at or below it (two index seeks, then a range).
/// - `reversals`: the few rows that reverse a closed accrual, indexed by what
///   they reverse.
///
/// The data of older closes is converted by the upgrade (in Rust, see
/// `History::convert_v2`), after which the version 2 tables are dropped.
const SCHEMA_V3: &str = "
CREATE TABLE accrual_blocks(close_id INTEGER NOT NULL REFERENCES closes(id),
  first INTEGER NOT NULL, rows INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY(close_id, first));
CREATE TABLE charge_keys(close_id INTEGER NOT NULL REFERENCES closes(id),
  kind INTEGER NOT NULL, seq INTEGER NOT NULL, first_key BLOB NOT NULL,
  entries INTEGER NOT NULL, data BLOB NOT NULL,
  PRIMARY KEY(close_id, kind, seq));
CREATE INDEX charge_keys_first ON charge_keys(close_id, kind, first_key, seq);
CREATE TABLE reversals(close_id INTEGER NOT NULL REFERENCES closes(id),
  reverses TEXT NOT NULL, source_file TEXT NOT NULL, source_line INTEGER NOT NULL,
  line_amount TEXT);
CREATE INDEX reversals_reverses ON reversals(reverses);
";

/// Version 4: the reference IDs of `charge_keys` (kind 0) and of the
/// references filter are stored as their ID key (trimmed, lower case, see
/// [`crate::ingest::id_key`]), so a credit finds its charge by a
/// `ReferenceId` in any letter case with one look-up of its own key folded
/// the same way. Version 3 stored them as written, and its look-up tried
/// the credit's ID as written, in lower and in upper case only, which missed
/// a charge written in mixed case. No table changes: the upgrade rewrites
/// each close's reference key blocks and filter in Rust (see
/// `fold_keys`); the subscription keys stay as they are (their
/// subscription is already its key; product and SKU were compared as
/// written until version 5).
const SCHEMA_V4: &str = "";

/// Version 5: the product and SKU IDs of the subscription keys of
/// `charge_keys` (kind 1) and of the subscriptions filter are stored as
/// their ID key too (the subscription was one already), so a credit without
/// a `ReferenceId` finds its charge by `ProductId` and `SkuId` in any letter
/// case with one look-up, and [`reverse::matches`] compares them
/// case-insensitively. Versions 3 and 4 stored them as written: a reader of
/// such a file (never upgraded by a reader) tries the credit's product and
/// SKU as written, in lower and in upper case, which misses a charge
/// written in mixed case until the next `close` upgrades the file. No table
/// changes: the upgrade rewrites each close's subscription key blocks and
/// its subscriptions filter in Rust (see `fold_keys`); the reference keys,
/// the references filter and the accrual blocks stay as they are.
const SCHEMA_V5: &str = "";

/// The migrations, in order: `MIGRATIONS[i]` takes schema version `i` to
/// `i + 1`.
const MIGRATIONS: &[(&str, &str)] = &[
    ("porledger history v1", SCHEMA_V1),
    (
        "accruals.line_amount and accruals.reverses (credits against closed months)",
        SCHEMA_V2,
    ),
    (
        "accruals as compressed blocks of rows (accrual_blocks, charge_keys, reversals)",
        SCHEMA_V3,
    ),
    (
        "reference keys folded to one letter case (credits match a ReferenceId in any case)",
        SCHEMA_V4,
    ),
    (
        "product and SKU keys folded to one letter case (credits without a ReferenceId match ProductId and SkuId in any case)",
        SCHEMA_V5,
    ),
];

/// The busy timeout of readers (a writer holds the lock for one close).
const READ_WAIT: Duration = Duration::from_secs(60);

impl History {
    /// Opens an existing history read-only (`run`, `history`); `None` when
    /// the file does not exist. Never writes (but lets SQLite roll back what
    /// a killed writer left, see `roll_back_hot_journal`).
    pub fn open_read(path: &Path) -> Result<Option<History>, HistoryError> {
        match probe(path)? {
            Probe::Missing => Ok(None),
            Probe::Blank => {
                blank_is_empty(path, READ_WAIT)?;
                Ok(None)
            }
            // Version 0 (a file between creation and its first migration)
            // holds nothing a reader could use.
            Probe::Ours { version } if version < 1 => Err(HistoryError::Refused {
                path: path.display().to_string(),
                message: format!(
                    "history schema version {version} is older than this porledger's ({SCHEMA_VERSION}); the next `porledger close` upgrades it"
                ),
            }),
            // An older schema is read as it is (never upgraded by a reader):
            // the next `porledger close` upgrades it.
            Probe::Ours { version } => {
                roll_back_hot_journal(path);
                match History::open_read_as(path, version, false) {
                    // A history in a directory this user may not write (an
                    // archive, a read-only share): SQLite cannot create the
                    // `-shm` file it reads a WAL database through. Without
                    // a `-wal` holding changes (no writer can be at work
                    // there), the file alone is the history: read as
                    // immutable.
                    Err(HistoryError::Sqlite { source, .. })
                        if matches!(
                            source.sqlite_error_code(),
                            Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen)
                        ) =>
                    {
                        let mut wal = path.as_os_str().to_owned();
                        wal.push("-wal");
                        if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
                            return Err(HistoryError::Refused {
                                path: path.display().to_string(),
                                message: format!(
                                    "cannot be read here ({source}): its directory cannot be written, and \
                                     {} holds changes not yet in the file, which SQLite reads only \
                                     through a file it creates beside it; copy the history and its -wal \
                                     file to a directory you can write, or open it once where it can be written",
                                    std::path::Path::new(&wal).display()
                                ),
                            });
                        }
                        History::open_read_as(path, version, true).map(Some)
                    }
                    r => r.map(Some),
                }
            }
        }
    }

    /// [`History::open_read`] of a history of schema `version`; `immutable`:
    /// through SQLite's `immutable` URI parameter (no lock, no `-shm`), for
    /// a file no writer can change.
    fn open_read_as(path: &Path, version: i32, immutable: bool) -> Result<History, HistoryError> {
        {
            {
                let conn = if immutable {
                    Connection::open_with_flags(
                        immutable_uri(path),
                        OpenFlags::SQLITE_OPEN_READ_ONLY
                            | OpenFlags::SQLITE_OPEN_NO_MUTEX
                            | OpenFlags::SQLITE_OPEN_URI,
                    )
                } else {
                    Connection::open_with_flags(
                        path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                }
                .map_err(|e| sql(path, e))?;
                conn.busy_timeout(READ_WAIT).map_err(|e| sql(path, e))?;
                // Credit look-ups seek each closed period's key tables: keep
                // their upper pages in memory (SQLite's default is 2 MB;
                // pages are allocated as used).
                conn.pragma_update(None, "cache_size", -65_536)
                    .map_err(|e| sql(path, e))?;
                let mut h = History {
                    conn,
                    path: path.to_path_buf(),
                    wait: READ_WAIT,
                    schema: version,
                    filters: Default::default(),
                    charges: Default::default(),
                };
                h.check_ids()?;
                h.read_schema()?;
                Ok(h)
            }
        }
    }

    /// Opens the history for writing (`close`), creating it on first use and
    /// upgrading an older schema; `wait` is how long to wait for another
    /// writer.
    pub fn open_write(path: &Path, wait: Duration) -> Result<History, HistoryError> {
        let found = probe(path)?;
        if found == Probe::Blank {
            blank_is_empty(path, wait)?;
        }
        let conn = Connection::open(path).map_err(|e| sql(path, e))?;
        conn.busy_timeout(sqlite_wait(wait))
            .map_err(|e| sql(path, e))?;
        let mut h = History {
            conn,
            path: path.to_path_buf(),
            wait,
            schema: SCHEMA_VERSION,
            filters: Default::default(),
            charges: Default::default(),
        };
        let current = matches!(found, Probe::Ours { version } if version == SCHEMA_VERSION);
        let busy = |e: rusqlite::Error| busy_or(path, wait, e);
        // WAL: readers never block the writer and a killed writer leaves
        // only uncommitted frames, which the next open ignores. Set before
        // the file is created or upgraded, so that a close killed meanwhile
        // leaves no rollback journal (which a reader, opening read-only,
        // could not roll back).
        h.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(busy)?;
        if !current {
            h.migrate()?;
        }
        h.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(busy)?;
        // A close appends its blocks and statement lines in key order, so
        // its pages are written once; 32 MB holds the upper B-tree pages
        // and the few tables inserted out of order (designations, usage
        // marks). Pages are allocated as used: a small close stays small.
        h.conn
            .pragma_update(None, "cache_size", -32_768)
            .map_err(busy)?;
        h.check_ids()?;
        if !current {
            // The ids and schema version into the main file's header, where
            // `probe` reads them.
            h.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(busy)?;
        }
        Ok(h)
    }

    /// Creates or upgrades the schema in one transaction.
    fn migrate(&mut self) -> Result<(), HistoryError> {
        let (path, wait) = (self.path.clone(), self.wait);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| busy_or(&path, wait, e))?;
        let app: i32 = tx
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| sql(&path, e))?;
        let mut version: i32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| sql(&path, e))?;
        if app != 0 && app != APPLICATION_ID {
            return Err(HistoryError::Foreign {
                path: path.display().to_string(),
                why: format!("application_id {app:#x}"),
            });
        }
        // Read again inside the transaction (the file may have changed
        // since `probe`): a version no porledger writes is not upgraded.
        if !(0..=SCHEMA_VERSION).contains(&version) {
            return Err(HistoryError::Foreign {
                path: path.display().to_string(),
                why: format!("porledger's application_id with the schema version {version}, which this porledger does not write"),
            });
        }
        if app == 0 {
            // A new file (another process may have created it meanwhile: then
            // it has our id and a version, handled below).
            let tables: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
                .map_err(|e| sql(&path, e))?;
            if tables != 0 {
                return Err(HistoryError::Foreign {
                    path: path.display().to_string(),
                    why: "an SQLite database of another application".into(),
                });
            }
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(|e| sql(&path, e))?;
        }
        // Whether the closes' keys were written by this build's encoder in
        // this upgrade (then they are folded already).
        let mut encoded = false;
        while version < SCHEMA_VERSION {
            let (what, ddl) = MIGRATIONS[version as usize];
            tx.execute_batch(ddl).map_err(|e| sql(&path, e))?;
            version += 1;
            if version == 3 {
                convert_v2(&tx, &path)?;
                encoded = true;
            }
            // Closes converted from version 2 above were written by this
            // build's encoder: their keys are folded already.
            if version == 4 && !encoded {
                fold_keys(&tx, &path, 0)?;
            }
            if version == 5 && !encoded {
                fold_keys(&tx, &path, 1)?;
            }
            tx.execute(
                "INSERT INTO migrations(version, description) VALUES (?1, ?2)",
                params![version, what],
            )
            .map_err(|e| sql(&path, e))?;
            tx.pragma_update(None, "user_version", version)
                .map_err(|e| sql(&path, e))?;
        }
        tx.commit().map_err(|e| sql(&path, e))
    }

    /// Takes the schema version from SQLite, not from the file's header
    /// (which `probe` read): an upgrade whose checkpoint is still pending
    /// lives in the write-ahead log, and a reader must use the layout of the
    /// snapshot it reads (version 3 dropped tables that version 2 readers
    /// query). Called again when a reader starts its long read transaction.
    fn read_schema(&mut self) -> Result<(), HistoryError> {
        let version: i32 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| sql(&self.path, e))?;
        if version > SCHEMA_VERSION {
            return Err(HistoryError::Newer {
                path: self.path.display().to_string(),
                found: version,
            });
        }
        if version < 1 {
            return Err(HistoryError::Refused {
                path: self.path.display().to_string(),
                message: format!(
                    "history schema version {version} is older than this porledger's ({SCHEMA_VERSION}); the next `porledger close` upgrades it"
                ),
            });
        }
        self.schema = version;
        Ok(())
    }

    /// Re-checks the ids through SQLite (the probe read the header only).
    fn check_ids(&self) -> Result<(), HistoryError> {
        let app: i32 = self
            .conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| sql(&self.path, e))?;
        if app != APPLICATION_ID {
            return Err(HistoryError::Foreign {
                path: self.path.display().to_string(),
                why: format!("application_id {app:#x}"),
            });
        }
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every issued version, by period then version; only `period` if given.
    pub fn closes(&self, period: Option<&str>) -> Result<Vec<CloseInfo>, HistoryError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT period, version, restates, manifest_sha256, tool_version, rounding, accruals, partners
                 FROM closes WHERE ?1 IS NULL OR period = ?1 ORDER BY period, version",
            )
            .map_err(|e| sql(&self.path, e))?;
        let rows = st
            .query_map(params![period], |r| {
                Ok(CloseInfo {
                    period: r.get(0)?,
                    version: r.get(1)?,
                    restates: r.get(2)?,
                    manifest_sha256: r.get(3)?,
                    tool_version: r.get(4)?,
                    rounding: r.get(5)?,
                    accruals: r.get::<_, i64>(6)? as u64,
                    partners: r.get::<_, i64>(7)? as u64,
                })
            })
            .map_err(|e| sql(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sql(&self.path, e))
    }

    /// The latest issued version of `period`, if it is closed.
    pub fn latest(&self, period: &str) -> Result<Option<u32>, HistoryError> {
        latest(&self.conn, period).map_err(|e| sql(&self.path, e))
    }

    /// The issued version whose run's `manifest.json` has the SHA-256
    /// `manifest_sha256` (period, version), if one has.
    pub fn issued_as(&self, manifest_sha256: &str) -> Result<Option<(String, u32)>, HistoryError> {
        let recorded = recorded(&self.conn).map_err(|e| sql(&self.path, e))?;
        Ok(recorded
            .into_iter()
            .find(|c| c.manifest_sha256 == manifest_sha256)
            .map(|c| (c.period, c.version)))
    }

    /// The closes this history holds, as a run records them ([`Seen`]).
    pub fn seen(&self) -> Result<Seen, HistoryError> {
        let recorded = recorded(&self.conn).map_err(|e| sql(&self.path, e))?;
        Ok(seen_of(&recorded))
    }

    /// What a run of `period` with this history records in its manifest
    /// (but the file's name): the closes it read and, when `period` is
    /// closed, its latest version as the one the run restates. One read, so
    /// the two agree.
    pub fn run_history(&self, period: &str) -> Result<RunHistory, HistoryError> {
        let recorded = recorded(&self.conn).map_err(|e| sql(&self.path, e))?;
        let seen = seen_of(&recorded);
        let restated = recorded
            .iter()
            .filter(|c| c.period == period)
            .max_by_key(|c| c.version);
        Ok(RunHistory {
            file: None,
            closes: Some(seen.closes),
            closes_sha256: Some(seen.sha256),
            restates: restated.map(|c| c.version),
            restates_manifest_sha256: restated.map(|c| c.manifest_sha256.clone()),
        })
    }

    /// Refuses `period` when it shares a month with a closed period of
    /// another label (compared month by month): such a run could never be
    /// closed, so `run --history` refuses it before any work, with the
    /// message `close` would give.
    pub fn refuse_overlap(&self, period: &str) -> Result<(), HistoryError> {
        let recorded = recorded(&self.conn).map_err(|e| sql(&self.path, e))?;
        match overlapping(&self.path, &recorded, period)? {
            None => Ok(()),
            Some((closed, version)) => Err(overlap_refused(&self.path, period, closed, version)),
        }
    }

    fn close_id(&self, period: &str, version: u32) -> Result<i64, HistoryError> {
        self.conn
            .query_row(
                "SELECT id FROM closes WHERE period = ?1 AND version = ?2",
                params![period, version],
                |r| r.get(0),
            )
            .map_err(|e| sql(&self.path, e))
    }

    /// The issued statement lines of one version, optionally of one partner,
    /// ordered by partner, customer, program, accrual month, currency.
    pub fn lines(
        &self,
        period: &str,
        version: u32,
        partner: Option<&str>,
    ) -> Result<Vec<LineRec>, HistoryError> {
        let id = self.close_id(period, version)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT partner_id, partner_name, customer_id, customer_name, program_id, accrual_month,
                        currency, lines, basis, amount
                 FROM statement_lines WHERE close_id = ?1 AND (?2 IS NULL OR partner_id = ?2)
                 ORDER BY partner_id, customer_id, program_id, accrual_month, currency",
            )
            .map_err(|e| sql(&self.path, e))?;
        let rows = st
            .query_map(params![id, partner], |r| {
                Ok(LineRec {
                    partner_id: r.get(0)?,
                    partner_name: r.get(1)?,
                    customer_id: r.get(2)?,
                    customer_name: r.get(3)?,
                    program_id: r.get(4)?,
                    accrual_month: r.get(5)?,
                    currency: r.get(6)?,
                    lines: r.get::<_, i64>(7)? as u64,
                    basis: r.get(8)?,
                    amount: r.get(9)?,
                })
            })
            .map_err(|e| sql(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sql(&self.path, e))
    }

    /// The issued partner totals of one version, optionally of one partner.
    pub fn totals(
        &self,
        period: &str,
        version: u32,
        partner: Option<&str>,
    ) -> Result<Vec<TotalRec>, HistoryError> {
        let id = self.close_id(period, version)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT partner_id, partner_name, currency, amount FROM statement_totals
                 WHERE close_id = ?1 AND (?2 IS NULL OR partner_id = ?2)
                 ORDER BY partner_id, currency",
            )
            .map_err(|e| sql(&self.path, e))?;
        let rows = st
            .query_map(params![id, partner], |r| {
                Ok(TotalRec {
                    partner_id: r.get(0)?,
                    partner_name: r.get(1)?,
                    currency: r.get(2)?,
                    amount: r.get(3)?,
                })
            })
            .map_err(|e| sql(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sql(&self.path, e))
    }

    /// Every partner's name as last issued (the newest close that names it).
    pub fn partner_names(&self) -> Result<BTreeMap<String, String>, HistoryError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT t.partner_id, t.partner_name FROM statement_totals t
                 JOIN closes c ON c.id = t.close_id
                 WHERE t.partner_name <> '' ORDER BY c.id, t.rowid",
            )
            .map_err(|e| sql(&self.path, e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| sql(&self.path, e))?;
        let mut names = BTreeMap::new();
        for r in rows {
            let (id, name) = r.map_err(|e| sql(&self.path, e))?;
            names.insert(id, name);
        }
        Ok(names)
    }

    /// The partner `wanted` (compared trimmed and case-insensitively) as
    /// last issued: its ID as spelled there and its newest non-empty name
    /// (empty where no close names it); `None` when no close holds it.
    pub fn partner(&self, wanted: &str) -> Result<Option<(String, String)>, HistoryError> {
        let key = crate::ingest::id_key(wanted.trim());
        let mut st = self
            .conn
            .prepare(
                "SELECT t.partner_id, t.partner_name FROM statement_totals t
                 JOIN closes c ON c.id = t.close_id ORDER BY c.id, t.rowid",
            )
            .map_err(|e| sql(&self.path, e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| sql(&self.path, e))?;
        let mut found: Option<(String, String)> = None;
        for r in rows {
            let (id, name) = r.map_err(|e| sql(&self.path, e))?;
            if !crate::ingest::id_matches(&key, &id) {
                continue;
            }
            let name = match (name.is_empty(), found.take()) {
                (true, Some((_, older))) => older,
                _ => name,
            };
            found = Some((id, name));
        }
        Ok(found)
    }

    /// The input files of one version (role, path, SHA-256).
    pub fn inputs(&self, period: &str, version: u32) -> Result<Vec<FileRec>, HistoryError> {
        let id = self.close_id(period, version)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT path, role, sha256, bytes FROM inputs WHERE close_id = ?1 ORDER BY role, path",
            )
            .map_err(|e| sql(&self.path, e))?;
        let rows = st
            .query_map(params![id], |r| {
                Ok(FileRec {
                    path: r.get(0)?,
                    role: r.get(1)?,
                    sha256: r.get(2)?,
                    bytes: r.get::<_, i64>(3)? as u64,
                })
            })
            .map_err(|e| sql(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sql(&self.path, e))
    }

    /// The designation rows shown on the issued customer statements of one
    /// version, sorted.
    pub fn designations(
        &self,
        period: &str,
        version: u32,
    ) -> Result<Vec<DesignationRec>, HistoryError> {
        let id = self.close_id(period, version)?;
        let mut st = self
            .conn
            .prepare(
                "SELECT partner_id, customer_id, association, subscription_id, workload, share,
                        valid_from, valid_to, source_line
                 FROM designations WHERE close_id = ?1",
            )
            .map_err(|e| sql(&self.path, e))?;
        let rows = st
            .query_map(params![id], |r| {
                Ok(DesignationRec {
                    partner_id: r.get(0)?,
                    customer_id: r.get(1)?,
                    association: r.get(2)?,
                    subscription_id: r.get(3)?,
                    workload: r.get(4)?,
                    share: r.get(5)?,
                    valid_from: r.get(6)?,
                    valid_to: r.get(7)?,
                    source_line: r.get::<_, i64>(8)? as u64,
                })
            })
            .map_err(|e| sql(&self.path, e))?;
        let mut v: Vec<DesignationRec> = rows
            .collect::<Result<_, _>>()
            .map_err(|e| sql(&self.path, e))?;
        v.sort();
        Ok(v)
    }

    /// The accruals of one version of a period for one partner (explain), in
    /// source order.
    pub fn accruals(
        &self,
        period: &str,
        version: u32,
        partner: &str,
    ) -> Result<Vec<AccrualRec>, HistoryError> {
        let id = self.close_id(period, version)?;
        if self.schema >= 3 {
            let recorded: i64 = self
                .conn
                .query_row("SELECT accruals FROM closes WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .map_err(|e| sql(&self.path, e))?;
            let (mut found, mut n) = (Vec::new(), 0i64);
            self.each_block(id, (period, version), |b| {
                n += b.rows() as i64;
                for i in 0..b.rows() {
                    if b.bytes(i, 0) == Some(partner.as_bytes()) {
                        found.push(accrual_at(b, i).map_err(|e| self.damaged(period, version, e))?);
                    }
                }
                Ok(())
            })?;
            if n != recorded {
                let what = format!("{n} rows where the close recorded {recorded}");
                return Err(self.damaged(period, version, what));
            }
            return Ok(found);
        }
        let sql_text = format!(
            "SELECT {ACCRUAL_COLUMNS}, {} FROM accruals WHERE close_id = ?1 AND partner_id = ?2 ORDER BY rowid",
            self.v2_columns()
        );
        let mut st = self
            .conn
            .prepare(&sql_text)
            .map_err(|e| sql(&self.path, e))?;
        let rows = st
            .query_map(params![id, partner], accrual_rec)
            .map_err(|e| sql(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sql(&self.path, e))
    }

    /// Streams the accruals of the issued versions `versions` (period,
    /// version) whose accrual month is in `months` (`YYYY-MM` first and
    /// last, inclusive; a row without accrual month is passed on for the
    /// caller to date by its charge date), in recorded order, one row at a
    /// time into `f` (`porledger tieout --history`). One read transaction,
    /// so one consistent read. A version the history does not hold is an
    /// error.
    ///
    /// Each version's rows are read as their own range of rowids (a close
    /// appends its accruals, see `close`), found by a binary search on the
    /// close of a rowid: the read costs the versions' rows, not the table.
    /// Every row of the range must belong to the close and their number must
    /// be the one it recorded, or the history is refused as damaged.
    pub fn issued_accruals<E: From<HistoryError>>(
        &self,
        versions: &[(String, u32)],
        months: (&str, &str),
        mut f: impl FnMut(&IssuedRow<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let path = &self.path;
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(|e| sql(path, e))?;
        // The layout of this transaction's snapshot (see `read_schema`).
        let schema: i32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| sql(path, e))?;
        let mut ids = BTreeMap::new();
        for (period, version) in versions {
            let id: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT id, accruals FROM closes WHERE period = ?1 AND version = ?2",
                    params![period, version],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(|e| sql(path, e))?;
            let (id, recorded) = id.ok_or_else(|| HistoryError::Refused {
                path: path.display().to_string(),
                message: format!("period {period} version {version} is not in this history"),
            })?;
            ids.insert(id, (period.as_str(), *version, recorded));
        }
        if ids.is_empty() {
            return Ok(());
        }
        if schema >= 3 {
            for (&id, &(period, version, recorded)) in &ids {
                let mut n = 0i64;
                self.each_block::<E>(id, (period, version), |b| {
                    let bad = |m: String| E::from(self.damaged(period, version, m));
                    for i in 0..b.rows() {
                        n += 1;
                        let t = |c: usize| {
                            b.text(i, c)
                                .and_then(|v| v.ok_or_else(|| format!("row {i} has no field {c}")))
                                .map_err(bad)
                        };
                        let month = t(6)?;
                        if !month.is_empty() && (month < months.0 || month > months.1) {
                            continue;
                        }
                        let line = t(8)?;
                        f(&IssuedRow {
                            period,
                            version,
                            partner_id: t(0)?,
                            customer_id: t(1)?,
                            program_id: t(2)?,
                            association: t(3)?,
                            subscription_id: t(4)?,
                            charge_date: t(5)?,
                            accrual_month: month,
                            source_file: t(7)?,
                            source_line: line.parse().map_err(|_| {
                                bad(format!("row {i}: '{line}' is not a whole number"))
                            })?,
                            basis: t(14)?,
                            rate: t(15)?,
                            share: t(16)?,
                            amount: t(17)?,
                            currency: t(18)?,
                        })?;
                    }
                    Ok(())
                })?;
                if n != recorded {
                    return Err(self
                        .damaged(
                            period,
                            version,
                            format!("{n} rows where the close recorded {recorded}"),
                        )
                        .into());
                }
            }
            return Ok(());
        }
        let damaged = |period: &str, version: u32, what: String| HistoryError::Refused {
            path: path.display().to_string(),
            message: format!(
                "the accruals of period {period} version {version} {what}: the history is damaged"
            ),
        };
        let mut probe = tx
            .prepare(
                "SELECT rowid, close_id FROM accruals WHERE rowid >= ?1 ORDER BY rowid LIMIT 1",
            )
            .map_err(|e| sql(path, e))?;
        let mut row_at = |x: i64| -> Result<Option<(i64, i64)>, HistoryError> {
            probe
                .query_row([x], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(|e| sql(path, e))
        };
        let (min, max): (i64, i64) = tx
            .query_row(
                "SELECT coalesce(min(rowid), 1), coalesce(max(rowid), 0) FROM accruals",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| sql(path, e))?;
        // The first rowid of close `id` or a later one (max + 1 when none):
        // closes hold increasing ids and append their rows.
        let mut first_of = |id: i64| -> Result<i64, HistoryError> {
            let (mut lo, mut hi) = (min, max + 1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match row_at(mid)? {
                    Some((r, c)) if c < id => lo = r + 1,
                    _ => hi = mid,
                }
            }
            Ok(row_at(lo)?.map_or(max + 1, |(r, _)| r))
        };
        let mut st = tx
            .prepare(
                "SELECT close_id, partner_id, customer_id, program_id, association, subscription_id,
                        charge_date, accrual_month, source_file, source_line, basis, rate, share,
                        amount, currency
                 FROM accruals WHERE rowid >= ?1 AND rowid < ?2 ORDER BY rowid",
            )
            .map_err(|e| sql(path, e))?;
        for (&id, &(period, version, recorded)) in &ids {
            let (start, end) = (first_of(id)?, first_of(id + 1)?);
            let mut rows = st.query(params![start, end]).map_err(|e| sql(path, e))?;
            let mut n = 0i64;
            while let Some(r) = rows.next().map_err(|e| sql(path, e))? {
                let text = move |i: usize| -> Result<&str, HistoryError> {
                    r.get_ref(i)
                        .and_then(|v| v.as_str().map_err(Into::into))
                        .map_err(|e| sql(path, e))
                };
                let close: i64 = r.get(0).map_err(|e| sql(path, e))?;
                if close != id {
                    return Err(damaged(period, version, "are not one run of rows".into()).into());
                }
                n += 1;
                let month = text(7)?;
                if !month.is_empty() && (month < months.0 || month > months.1) {
                    continue;
                }
                let line: i64 = r.get(9).map_err(|e| sql(path, e))?;
                f(&IssuedRow {
                    period,
                    version,
                    partner_id: text(1)?,
                    customer_id: text(2)?,
                    program_id: text(3)?,
                    association: text(4)?,
                    subscription_id: text(5)?,
                    charge_date: text(6)?,
                    accrual_month: month,
                    source_file: text(8)?,
                    source_line: u64::try_from(line).unwrap_or(0),
                    basis: text(10)?,
                    rate: text(11)?,
                    share: text(12)?,
                    amount: text(13)?,
                    currency: text(14)?,
                })?;
            }
            if n != recorded {
                return Err(damaged(
                    period,
                    version,
                    format!("number {n} where the close recorded {recorded}"),
                )
                .into());
            }
        }
        Ok(())
    }

    /// The history is damaged: `what` is wrong with the accruals of a version.
    fn damaged(&self, period: &str, version: u32, what: impl std::fmt::Display) -> HistoryError {
        HistoryError::Refused {
            path: self.path.display().to_string(),
            message: format!(
                "the accruals of period {period} version {version}: {what}: the history is damaged"
            ),
        }
    }

    /// Calls `f` with each accrual block of close `id` (`period`, `version`)
    /// in order (schema version 3); the blocks must follow each other
    /// without gaps.
    fn each_block<E: From<HistoryError>>(
        &self,
        id: i64,
        (period, version): (&str, u32),
        mut f: impl FnMut(&block::Block) -> Result<(), E>,
    ) -> Result<(), E> {
        let s = |e| sql(&self.path, e);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT first, rows, data FROM accrual_blocks WHERE close_id = ?1 ORDER BY first",
            )
            .map_err(s)?;
        let mut rows = st.query([id]).map_err(s)?;
        let mut next = 0i64;
        while let Some(r) = rows.next().map_err(s)? {
            let first: i64 = r.get(0).map_err(s)?;
            let count: i64 = r.get(1).map_err(s)?;
            if first != next {
                let what = format!("a block starts at row {first} where row {next} was expected");
                return Err(self.damaged(period, version, what).into());
            }
            let b = block_at(r, count).map_err(|e| {
                self.damaged(period, version, format!("the block at row {first}: {e}"))
            })?;
            f(&b)?;
            next = first + count;
        }
        Ok(())
    }

    /// The columns of schema version 2 in `accruals`, or NULLs in their
    /// place in an older file.
    fn v2_columns(&self) -> &'static str {
        if self.schema >= 2 {
            "line_amount, reverses"
        } else {
            "NULL, NULL"
        }
    }

    /// The recorded accruals of the charges `key` may credit, in the latest
    /// issued version of every closed period: by reference ID when the
    /// credit has one, otherwise by subscription, product and SKU with
    /// overlapping charge dates (see [`reverse::matches`]). Each comes with
    /// its period and version, ordered by period, then as recorded. Uses the
    /// key tables (see `SCHEMA_V2`): the cost is per credit and closed
    /// period, not per closed row.
    /// Empty in a schema version 1 history (it recorded no source keys).
    pub fn closed_charges(
        &self,
        key: &reverse::ChargeKey,
    ) -> Result<Vec<ClosedAccrual>, HistoryError> {
        Ok(self.closed_charges_capped(key, usize::MAX, None)?.0)
    }

    /// [`History::closed_charges`], returning the accruals of at most `cap`
    /// charges found under a subscription, product and SKU key, and how
    /// many more charges match: a credit that matches more than one is
    /// rejected naming a few ([`reverse::one_charge`]), and copying every
    /// candidate for each credit made a run's time grow as credits x
    /// candidates (thousands of SKUs of one product, credited without one).
    /// The closes of period `skip` (the one a run restates) are left out.
    pub fn closed_charges_capped(
        &self,
        key: &reverse::ChargeKey,
        cap: usize,
        skip: Option<&str>,
    ) -> Result<(Vec<ClosedAccrual>, u64), HistoryError> {
        if self.schema < 2 {
            return Ok((Vec::new(), 0));
        }
        if self.schema >= 3 {
            return self.closed_charges_v3(key, cap, skip);
        }
        // The latest version of every closed period (few rows), then per
        // close the heads of the matching charges through its part of a key
        // table, then each matching charge's run of rows by rowid. Asked once
        // per credit line: the statements are prepared once per connection.
        let mut closes = self.latest_closes()?;
        closes.retain(|(_, period, _)| Some(period.as_str()) != skip);
        let cols = format!("{ACCRUAL_COLUMNS}, line_amount, reverses, rowid, charge_rows");
        let mut heads = self
            .conn
            .prepare_cached(match (key.reference(), key.scope) {
                (Some(_), _) => {
                    "SELECT head FROM charge_references
                     WHERE close_id = ?1 AND reference_id = ?2 ORDER BY head"
                }
                (None, reverse::Scope::Whole) => {
                    "SELECT head FROM charge_subscriptions
                     WHERE close_id = ?1 AND subscription_id = ?2 AND product_id = ?3 AND sku_id = ?4
                     ORDER BY head"
                }
                (None, reverse::Scope::AnySku) => {
                    "SELECT head FROM charge_subscriptions
                     WHERE close_id = ?1 AND subscription_id = ?2 AND product_id = ?3
                     ORDER BY head"
                }
                (None, reverse::Scope::AnyProduct) => {
                    "SELECT head FROM charge_subscriptions
                     WHERE close_id = ?1 AND subscription_id = ?2 ORDER BY head"
                }
            })
            .map_err(|e| sql(&self.path, e))?;
        let mut head_row = self
            .conn
            .prepare_cached(&format!("SELECT {cols} FROM accruals WHERE rowid = ?1"))
            .map_err(|e| sql(&self.path, e))?;
        let mut rest = self
            .conn
            .prepare_cached(&format!(
                "SELECT {cols} FROM accruals WHERE rowid > ?1 AND rowid < ?1 + ?2 ORDER BY rowid"
            ))
            .map_err(|e| sql(&self.path, e))?;
        let with_rowid = |r: &rusqlite::Row<'_>| -> rusqlite::Result<(AccrualRec, i64, i64)> {
            Ok((
                accrual_rec(r)?,
                r.get(22)?,
                r.get::<_, Option<i64>>(23)?.unwrap_or(1),
            ))
        };
        // Version 2 stored product and SKU as written: each spelling of
        // `charge_spellings` is looked up, like the key blocks of versions 3
        // and 4.
        let spellings = self.charge_spellings(key);
        let mut found = Vec::new();
        for (id, period, version) in closes {
            let rowid = |r: &rusqlite::Row<'_>| r.get::<_, i64>(0);
            let mut rowids = Vec::new();
            match key.reference() {
                Some(r) => {
                    if self.may_hold(id, 0, r.as_bytes())? {
                        rowids.extend(
                            heads
                                .query_map(params![id, r], rowid)
                                .map_err(|e| sql(&self.path, e))?
                                .collect::<Result<Vec<_>, _>>()
                                .map_err(|e| sql(&self.path, e))?,
                        );
                    }
                }
                None => {
                    for (product, sku) in &spellings {
                        let joined = joined_key(&key.subscription_id, product, sku);
                        let sub = &key.subscription_id;
                        let rows = match key.scope {
                            reverse::Scope::Whole => {
                                if !self.may_hold(id, 1, &joined)? {
                                    continue;
                                }
                                heads.query_map(params![id, sub, product, sku], rowid)
                            }
                            // The filters know whole keys only.
                            reverse::Scope::AnySku => {
                                heads.query_map(params![id, sub, product], rowid)
                            }
                            reverse::Scope::AnyProduct => heads.query_map(params![id, sub], rowid),
                        };
                        rowids.extend(
                            rows.map_err(|e| sql(&self.path, e))?
                                .collect::<Result<Vec<_>, _>>()
                                .map_err(|e| sql(&self.path, e))?,
                        );
                    }
                }
            }
            // The heads of every spelling, once each, in row order.
            rowids.sort_unstable();
            rowids.dedup();
            let mut matching = Vec::with_capacity(rowids.len());
            for rowid in rowids {
                let head = head_row
                    .query_row(params![rowid], with_rowid)
                    .map_err(|e| sql(&self.path, e))?;
                // The key tables find candidates; the head row decides.
                if reverse::matches(key, &head.0) {
                    matching.push(head);
                }
            }
            for (head, rowid, n) in matching {
                let tail = rest
                    .query_map(params![rowid, n], with_rowid)
                    .map_err(|e| sql(&self.path, e))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| sql(&self.path, e))?;
                let keys = (
                    head.reference_id.clone(),
                    head.product_id.clone(),
                    head.sku_id.clone(),
                    head.charge_start.clone(),
                    head.charge_end.clone(),
                );
                found.push((head, period.clone(), version));
                for (mut a, _, _) in tail {
                    // The run's rows share the head's source keys.
                    a.reference_id.clone_from(&keys.0);
                    a.product_id.clone_from(&keys.1);
                    a.sku_id.clone_from(&keys.2);
                    a.charge_start.clone_from(&keys.3);
                    a.charge_end.clone_from(&keys.4);
                    found.push((a, period.clone(), version));
                }
            }
        }
        let found = found
            .into_iter()
            .map(|(accrual, period, version)| ClosedAccrual {
                accrual,
                period,
                version,
            })
            .collect();
        Ok((found, 0))
    }

    /// The latest issued version of every closed period: (close id, period,
    /// version), by period.
    fn latest_closes(&self) -> Result<Vec<(i64, String, u32)>, HistoryError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT c.id, c.period, c.version FROM closes c
                 WHERE c.version = (SELECT max(version) FROM closes c2 WHERE c2.period = c.period)
                 ORDER BY c.period",
            )
            .map_err(|e| sql(&self.path, e))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(|e| sql(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sql(&self.path, e))
    }

    /// [`History::closed_charges`] in schema version 3: per latest close,
    /// the charges [`History::close_charges`] finds under the key's stored
    /// spellings that [`reverse::matches`] the key.
    /// The kind of stored key a credit's charge is under (0: reference, 1:
    /// subscription + product + SKU), whether its spellings are prefixes
    /// of stored keys rather than whole ones (a key whose [`reverse::Scope`]
    /// leaves the SKU or the product out), and its spellings: one from
    /// schema version 5 on (see `SCHEMA_V5`); in an older file, each
    /// spelling of `charge_spellings`.
    fn stored_keys(&self, key: &reverse::ChargeKey) -> (i64, bool, Vec<Vec<u8>>) {
        match (key.reference(), key.scope) {
            (Some(r), _) => (0, false, vec![self.reference_key(r).as_bytes().to_vec()]),
            // The subscription and the separator after it.
            (None, reverse::Scope::AnyProduct) => {
                let mut prefix = key.subscription_id.as_bytes().to_vec();
                prefix.push(0xff);
                (1, true, vec![prefix])
            }
            // Joined with the empty SKU, a key ends with the separator
            // after the product: the prefix of every SKU's key.
            (None, scope) => (
                1,
                scope == reverse::Scope::AnySku,
                self.charge_spellings(key)
                    .iter()
                    .map(|(product, sku)| joined_key(&key.subscription_id, product, sku))
                    .collect(),
            ),
        }
    }

    fn closed_charges_v3(
        &self,
        key: &reverse::ChargeKey,
        cap: usize,
        skip: Option<&str>,
    ) -> Result<(Vec<ClosedAccrual>, u64), HistoryError> {
        let (kind, prefix, spellings) = self.stored_keys(key);
        let mut found = Vec::new();
        let (mut taken, mut more) = (0usize, 0u64);
        for (id, period, version) in self.latest_closes()? {
            if Some(period.as_str()) == skip {
                continue;
            }
            if kind == 0 {
                found.extend(self.close_charges(
                    id,
                    (&period, version),
                    (kind, prefix),
                    &spellings,
                    |head| reverse::matches(key, head),
                )?);
                continue;
            }
            // Every charge under the key that the key matches but for its
            // dates, once per run (what decides that is the same for every
            // credit asking this key: the key's spellings are made from it),
            // then only those whose dates overlap the credit's.
            let cache_key = (id, prefix, spellings.clone());
            if !self.charges.borrow().contains_key(&cache_key) {
                let all = self.close_charges(
                    id,
                    (&period, version),
                    (kind, prefix),
                    &spellings,
                    |head| reverse::matches_but_dates(key, head),
                )?;
                let cached = cached_charges(all);
                self.charges.borrow_mut().insert(cache_key.clone(), cached);
            }
            let cache = self.charges.borrow();
            for c in &cache[&cache_key] {
                let overlaps = c
                    .dates
                    .is_some_and(|(start, end)| start <= key.charge_end && key.charge_start <= end);
                if !overlaps {
                    continue;
                }
                if taken < cap {
                    found.extend(c.accruals.iter().cloned());
                    taken += 1;
                } else {
                    more += 1;
                }
            }
        }
        Ok((found, more))
    }

    /// The charges matching `key` in the versions of closed periods that a
    /// later version replaced (schema version 3 on; nothing before), with
    /// the version that replaced each: a credit of a charge a restatement
    /// removed finds nothing in the latest versions, and must not accrue as
    /// a new line (the restatement's adjustment took the charge back).
    pub fn superseded_charges(
        &self,
        key: &reverse::ChargeKey,
    ) -> Result<Vec<(ClosedAccrual, u32)>, HistoryError> {
        if self.schema < 3 {
            return Ok(Vec::new());
        }
        let (kind, prefix, spellings) = self.stored_keys(key);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT c.id, c.period, c.version,
                        (SELECT max(version) FROM closes c2 WHERE c2.period = c.period)
                 FROM closes c
                 WHERE c.version < (SELECT max(version) FROM closes c2 WHERE c2.period = c.period)
                 ORDER BY c.period, c.version",
            )
            .map_err(|e| sql(&self.path, e))?;
        let closes: Vec<(i64, String, u32, u32)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .map_err(|e| sql(&self.path, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| sql(&self.path, e))?;
        let mut found = Vec::new();
        for (id, period, version, latest) in closes {
            for c in
                self.close_charges(id, (&period, version), (kind, prefix), &spellings, |head| {
                    reverse::matches(key, head)
                })?
            {
                found.push((c, latest));
            }
        }
        Ok(found)
    }

    /// The charges of close `id` (`period`, `version`; schema version 3 or
    /// later) stored under one of the keys `spellings` of `kind` (0: a
    /// reference key, 1: a key joined by [`joined_key`]), or, when `prefix`,
    /// under any key starting with one of them, whose head accrual `keep`
    /// accepts: each charge's run of accruals, in row order. Per key the
    /// close's filter (which knows whole keys only: a prefix skips it),
    /// then the key blocks that would hold it (two index seeks), then each
    /// head's accrual block: the cost is per key and close, not per closed
    /// row.
    fn close_charges(
        &self,
        id: i64,
        (period, version): (&str, u32),
        (kind, prefix): (i64, bool),
        spellings: &[Vec<u8>],
        keep: impl Fn(&AccrualRec) -> bool,
    ) -> Result<Vec<ClosedAccrual>, HistoryError> {
        let s = |e| sql(&self.path, e);
        // The blocks that may hold a key: from the last one starting below it
        // (it may end with the key's first entries; the first block when
        // none starts below) to the last one starting at or below it.
        let mut last_below = self
            .conn
            .prepare_cached(
                "SELECT seq FROM charge_keys WHERE close_id = ?1 AND kind = ?2 AND first_key < ?3
                 ORDER BY first_key DESC, seq DESC LIMIT 1",
            )
            .map_err(s)?;
        let mut last_at = self
            .conn
            .prepare_cached(
                "SELECT seq FROM charge_keys WHERE close_id = ?1 AND kind = ?2 AND first_key <= ?3
                 ORDER BY first_key DESC, seq DESC LIMIT 1",
            )
            .map_err(s)?;
        let mut last_block = self
            .conn
            .prepare_cached(
                "SELECT seq FROM charge_keys WHERE close_id = ?1 AND kind = ?2
                 ORDER BY first_key DESC, seq DESC LIMIT 1",
            )
            .map_err(s)?;
        let mut keys = self
            .conn
            .prepare_cached(
                "SELECT entries, data FROM charge_keys
                 WHERE close_id = ?1 AND kind = ?2 AND seq >= ?3 AND seq <= ?4 ORDER BY seq",
            )
            .map_err(s)?;
        let mut blocks = self
            .conn
            .prepare_cached(
                "SELECT first, rows, data FROM accrual_blocks
                 WHERE close_id = ?1 AND first <= ?2 ORDER BY first DESC LIMIT 1",
            )
            .map_err(s)?;
        let mut found = Vec::new();
        let bad = |what: String| self.damaged(period, version, what);
        let mut heads: Vec<u64> = Vec::new();
        for wanted in spellings {
            if !prefix && !self.may_hold(id, kind, wanted)? {
                continue;
            }
            let seq = |st: &mut rusqlite::CachedStatement<'_>, bound: &[u8]| {
                st.query_row(params![id, kind, bound], |r| r.get::<_, i64>(0))
                    .optional()
                    .map_err(s)
            };
            // A prefix's keys run up to the least key above them all.
            let to = match (prefix, above_prefix(wanted)) {
                (false, _) => seq(&mut last_at, wanted)?,
                (true, Some(above)) => seq(&mut last_below, &above)?,
                (true, None) => last_block
                    .query_row(params![id, kind], |r| r.get::<_, i64>(0))
                    .optional()
                    .map_err(s)?,
            };
            let Some(to) = to else {
                continue;
            };
            let from = seq(&mut last_below, wanted)?.unwrap_or(0);
            let mut rows = keys.query(params![id, kind, from, to]).map_err(s)?;
            while let Some(r) = rows.next().map_err(s)? {
                let entries: i64 = r.get(0).map_err(s)?;
                let blob = r
                    .get_ref(1)
                    .and_then(|v| v.as_blob().map_err(Into::into))
                    .map_err(s)?;
                let entries = usize::try_from(entries)
                    .map_err(|_| bad(format!("a key block of {entries} entries")))?;
                let b = block::Block::decode(blob, 2, entries)
                    .map_err(|e| bad(format!("a key block: {e}")))?;
                for i in 0..b.rows() {
                    let hit = match b.bytes(i, 0) {
                        Some(k) if prefix => k.starts_with(wanted),
                        k => k == Some(&wanted[..]),
                    };
                    if hit {
                        let at = b.text(i, 1).map_err(&bad)?.and_then(|t| t.parse().ok());
                        heads.push(at.ok_or_else(|| bad(format!("key entry {i} has no row")))?);
                    }
                }
            }
        }
        // The heads of every spelling, once each, in row order.
        heads.sort_unstable();
        heads.dedup();
        // Heads come in row order: consecutive ones often share a block.
        let mut last: Option<(i64, i64, block::Block)> = None;
        for head in heads {
            let at = i64::try_from(head).map_err(|_| bad(format!("a key points at row {head}")))?;
            let cached = last
                .take()
                .filter(|(first, count, _)| *first <= at && at < first + count);
            let (first, count, b) = match cached {
                Some(hit) => last.insert(hit),
                None => {
                    let b = blocks
                        .query_row(params![id, at], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, i64>(1)?,
                                block_at(r, r.get(1)?),
                            ))
                        })
                        .optional()
                        .map_err(s)?;
                    let Some((first, count, b)) = b else {
                        return Err(bad(format!(
                            "a key points at row {head}, which no block holds"
                        )));
                    };
                    let b = b.map_err(|e| bad(format!("the block at row {first}: {e}")))?;
                    last.insert((first, count, b))
                }
            };
            let i = usize::try_from(at - *first)
                .ok()
                .filter(|_| at < *first + *count);
            let i =
                i.ok_or_else(|| bad(format!("a key points at row {head}, which no block holds")))?;
            let head = accrual_at(b, i).map_err(&bad)?;
            // The key blocks find candidates; the head row decides.
            if !keep(&head) {
                continue;
            }
            let mut run = vec![head];
            for j in i + 1..b.rows() {
                let a = accrual_at(b, j).map_err(&bad)?;
                if a.source_line != run[0].source_line || a.source_file != run[0].source_file {
                    break;
                }
                run.push(a);
            }
            found.extend(run.into_iter().map(|accrual| ClosedAccrual {
                period: period.to_string(),
                version,
                accrual,
            }));
        }
        Ok(found)
    }

    /// The key under which this history stores the (trimmed) reference ID
    /// `r`: its ID key from schema version 4 on (see `SCHEMA_V4`), `r` as
    /// written before.
    fn reference_key<'a>(&self, r: &'a str) -> std::borrow::Cow<'a, str> {
        if self.schema >= 4 {
            std::borrow::Cow::Owned(crate::ingest::id_key(r))
        } else {
            std::borrow::Cow::Borrowed(r)
        }
    }

    /// The (product, SKU) spellings under which this history may store the
    /// charge of a credit without a reference ID (a missing SKU as ''):
    /// from schema version 5 on, one, their ID keys (see `SCHEMA_V5`);
    /// before, when they were stored as written, the credit's as written,
    /// in lower and in upper case (each once, in that order). A charge
    /// written in mixed case in an older file is found once the next
    /// `close` has upgraded it.
    fn charge_spellings(&self, key: &reverse::ChargeKey) -> Vec<(String, String)> {
        let (product, sku) = (key.product_id.as_str(), key.sku_id.as_deref().unwrap_or(""));
        if self.schema >= 5 {
            return vec![(
                crate::ingest::id_key(product.trim()),
                crate::ingest::id_key(sku.trim()),
            )];
        }
        let mut out: Vec<(String, String)> = Vec::with_capacity(3);
        for spelled in [
            (product.to_string(), sku.to_string()),
            (product.to_lowercase(), sku.to_lowercase()),
            (product.to_uppercase(), sku.to_uppercase()),
        ] {
            if !out.contains(&spelled) {
                out.push(spelled);
            }
        }
        out
    }

    /// Whether close `id` may hold a charge under the stored key `wanted`
    /// of `kind` (0: a reference key, by the references filter; 1: a key
    /// joined by [`joined_key`], by the subscriptions filter), by its key
    /// filters (loaded once per close); `true` when the close has none.
    fn may_hold(&self, id: i64, kind: i64, wanted: &[u8]) -> Result<bool, HistoryError> {
        let mut filters = self.filters.borrow_mut();
        let f = match filters.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let blobs: Option<(Vec<u8>, Vec<u8>)> = self
                    .conn
                    .prepare_cached(
                        "SELECT references_filter, subscriptions_filter FROM charge_filters WHERE close_id = ?1",
                    )
                    .and_then(|mut st| {
                        st.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()
                    })
                    .map_err(|e| sql(&self.path, e))?;
                e.insert(blobs.and_then(|(r, s)| {
                    Some((
                        filter::KeyFilter::from_bytes(&r)?,
                        filter::KeyFilter::from_bytes(&s)?,
                    ))
                }))
            }
        };
        Ok(match (f, kind) {
            (None, _) => true,
            (Some((refs, _)), 0) => refs.may_contain_joined(wanted),
            (Some((_, subs)), _) => subs.may_contain_joined(wanted),
        })
    }

    /// The sum of the closed credits recorded against `charge` (the head
    /// accrual of a charge in the latest version of its closed period, as
    /// [`History::closed_charges`] found it) under any version of its period:
    /// a credit taken against version 1 of a charge still counts once the
    /// period is restated as version 2, even if the restatement read the
    /// same export through another path or with its lines in another order
    /// (see `History::charge_labels` for how the charge is recognised in
    /// the other versions). Each credit line's whole amount once, from the
    /// latest version of the period that recorded it, except the credits of
    /// `restated` (the period a run restates: its credits are the run's own
    /// lines again, not credits taken before them).
    pub fn credited(
        &self,
        charge: &ClosedAccrual,
        restated: Option<&str>,
    ) -> Result<rust_decimal::Decimal, HistoryError> {
        if self.schema < 2 {
            return Ok(rust_decimal::Decimal::ZERO);
        }
        let table = if self.schema >= 3 {
            "reversals"
        } else {
            "accruals"
        };
        let labels = self.charge_labels(charge)?;
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT c.period, a.source_file, a.source_line, a.line_amount
                 FROM {table} a JOIN closes c ON c.id = a.close_id
                 WHERE a.reverses = ?1
                   AND (?2 IS NULL OR c.period <> ?2)
                   AND c.version = (SELECT max(version) FROM closes c2 WHERE c2.period = c.period)"
            ))
            .map_err(|e| sql(&self.path, e))?;
        // Each credit line once, whichever of the charge's labels (and
        // however many of its accruals) it reversed.
        let mut credits = std::collections::BTreeSet::new();
        for label in &labels {
            let rows = st
                .query_map(params![label, restated], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })
                .map_err(|e| sql(&self.path, e))?;
            for row in rows {
                credits.insert(row.map_err(|e| sql(&self.path, e))?);
            }
        }
        let mut sum = rust_decimal::Decimal::ZERO;
        for (_, _, _, a) in credits {
            let a = a.unwrap_or_default();
            let d = a
                .parse::<rust_decimal::Decimal>()
                .ok()
                .and_then(|d| sum.exact_add(d))
                .ok_or_else(|| HistoryError::Refused {
                    path: self.path.display().to_string(),
                    message: format!(
                        "a credit recorded against {} has the amount '{a}': not an exact decimal; the history is damaged",
                        labels[0]
                    ),
                })?;
            sum = d;
        }
        Ok(sum)
    }

    /// The labels (`PERIOD vVERSION FILE:LINE`, see
    /// [`reverse::reverses_label`]) under which credits of `charge` may be
    /// recorded, its own first. A charge's `FILE` is the billing path as the
    /// run was given it and `LINE` its line in that file, so the same charge
    /// has another label in a version of its period read through another
    /// path, or with its lines in another order. It is recognised in every
    /// other version of its period by what it is ([`reverse::same_charge`]:
    /// customer and `ReferenceId`, or without one subscription, product,
    /// SKU and charge dates), found through that close's key blocks like a
    /// credit's charge ([`History::close_charges`]): if one of that
    /// version's matches has the very same `FILE:LINE`, its label alone;
    /// otherwise the label of each match (identical charges of an older
    /// version share their credits: a credit may be refused, never reversed
    /// twice). A charge without source keys (never found by a credit) keeps
    /// its `FILE:LINE` in every version.
    ///
    /// A schema version 2 history (read as it is until the next `close`
    /// converts it to blocks) keeps that label logic for every charge: its
    /// key tables are a different layout, read only until that close, and
    /// the look-up is not worth a second implementation.
    fn charge_labels(&self, charge: &ClosedAccrual) -> Result<Vec<String>, HistoryError> {
        let a = &charge.accrual;
        let own = reverse::reverses_label(charge);
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, version FROM closes WHERE period = ?1 AND version <> ?2 ORDER BY version",
            )
            .map_err(|e| sql(&self.path, e))?;
        let others = st
            .query_map(params![charge.period, charge.version], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, u32>(1)?))
            })
            .map_err(|e| sql(&self.path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| sql(&self.path, e))?;
        let at = |version: u32, file: &str, line: u64| {
            format!("{} v{version} {file}:{line}", charge.period)
        };
        let mut labels = vec![own];
        let reference = a
            .reference_id
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty());
        let keys = match (reference, a.product_id.as_deref()) {
            _ if self.schema < 3 => None,
            (Some(r), _) => {
                // The reference key as stored; in a history of schema
                // version 3 (stored as written) in lower and upper case too.
                let mut spellings = vec![self.reference_key(r).into_owned()];
                if self.schema < 4 {
                    spellings.extend([r.to_lowercase(), r.to_uppercase()]);
                }
                let mut spellings: Vec<Vec<u8>> =
                    spellings.into_iter().map(String::into_bytes).collect();
                spellings.sort_unstable();
                spellings.dedup();
                Some((0, spellings))
            }
            (None, Some(product)) => {
                let key = reverse::ChargeKey {
                    subscription_id: a.subscription_id.clone(),
                    product_id: product.to_string(),
                    sku_id: a.sku_id.clone(),
                    ..reverse::ChargeKey::default()
                };
                let spellings = self
                    .charge_spellings(&key)
                    .iter()
                    .map(|(product, sku)| joined_key(&a.subscription_id, product, sku))
                    .collect();
                Some((1, spellings))
            }
            (None, None) => None,
        };
        for (id, version) in others {
            let Some((kind, spellings)) = &keys else {
                labels.push(at(version, &a.source_file, a.source_line));
                continue;
            };
            let found = self.close_charges(
                id,
                (&charge.period, version),
                (*kind, false),
                spellings,
                |head| reverse::same_charge(a, head),
            )?;
            let mut places: Vec<(&str, u64)> = found
                .iter()
                .map(|c| (c.accrual.source_file.as_str(), c.accrual.source_line))
                .collect();
            places.dedup();
            if places.contains(&(a.source_file.as_str(), a.source_line)) {
                places = vec![(a.source_file.as_str(), a.source_line)];
            }
            labels.extend(
                places
                    .into_iter()
                    .map(|(file, line)| at(version, file, line)),
            );
        }
        Ok(labels)
    }

    /// Every usage mark, by tenant, workload and month.
    pub fn usage_marks(&self) -> Result<Vec<UsageMark>, HistoryError> {
        let mut st = self
            .conn
            .prepare("SELECT customer_id, workload, month, mau FROM usage_marks ORDER BY customer_id, workload, month")
            .map_err(|e| sql(&self.path, e))?;
        let rows = st
            .query_map([], |r| {
                Ok(UsageMark {
                    customer_id: r.get(0)?,
                    workload: r.get(1)?,
                    month: r.get(2)?,
                    mau: r.get(3)?,
                })
            })
            .map_err(|e| sql(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| sql(&self.path, e))
    }

    /// Records `rec` and the accruals as the next issued version of its
    /// period, in one transaction; returns the version. Refused as
    /// [`check_close`] says. `pause` is called inside the transaction after
    /// every row is written, before the commit (the test hook).
    pub fn close<I, E>(
        &mut self,
        rec: &CloseRecord,
        accruals: I,
        pause: impl FnOnce(),
    ) -> Result<u32, CloseError<E>>
    where
        I: IntoIterator<Item = Result<AccrualRec, E>>,
    {
        let mut rec = rec.clone();
        let before_commit = |_| {
            pause();
            Ok(())
        };
        self.close_encoded(&mut rec, encode(accruals), |_| Ok(()), before_commit)
    }

    /// [`History::close`] of accruals already encoded (by [`encode`] or an
    /// [`AccrualEncoder`], e.g. on another thread while this one writes),
    /// with the statements coming last: `statements` fills `rec`'s lines,
    /// totals, designations and usage marks after the accruals are written
    /// (`close` reads them on another thread meanwhile). The period, the
    /// restated version, the manifest and the files must be in `rec` from
    /// the start. `before_commit` is called with the version inside the
    /// transaction after every row is written: an error rolls it back.
    pub fn close_encoded<I, E>(
        &mut self,
        rec: &mut CloseRecord,
        parts: I,
        statements: impl FnOnce(&mut CloseRecord) -> Result<(), E>,
        before_commit: impl FnOnce(u32) -> Result<(), E>,
    ) -> Result<u32, CloseError<E>>
    where
        I: IntoIterator<Item = Result<StoredPart, E>>,
    {
        let path = self.path.clone();
        let wait = self.wait;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| CloseError::History(busy_or(&path, wait, e)))?;
        let s = |e| CloseError::History(sql(&path, e));
        let recorded = recorded(&tx).map_err(s)?;
        let version = next_version(&path, &recorded, rec).map_err(CloseError::History)?;
        let id = insert_close(&tx, rec, version).map_err(s)?;
        let n = store_parts(&tx, id, parts)?;
        statements(rec).map_err(CloseError::Source)?;
        insert_statements(&tx, id, rec, n).map_err(s)?;
        before_commit(version).map_err(CloseError::Source)?;
        tx.commit().map_err(s)?;
        Ok(version)
    }
}

/// The columns of `accruals` read into an [`AccrualRec`] (then `line_amount`
/// and `reverses`).
const ACCRUAL_COLUMNS: &str =
    "partner_id, customer_id, program_id, association, subscription_id, charge_date, \
     accrual_month, source_file, source_line, reference_id, product_id, sku_id, \
     charge_start, charge_end, basis, rate, share, amount, currency, designation_line";

/// A row of `SELECT {ACCRUAL_COLUMNS}, line_amount, reverses`.
fn accrual_rec(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccrualRec> {
    Ok(AccrualRec {
        partner_id: r.get(0)?,
        customer_id: r.get(1)?,
        program_id: r.get(2)?,
        association: r.get(3)?,
        subscription_id: r.get(4)?,
        charge_date: r.get(5)?,
        accrual_month: r.get(6)?,
        source_file: r.get(7)?,
        source_line: r.get::<_, i64>(8)? as u64,
        reference_id: r.get(9)?,
        product_id: r.get(10)?,
        sku_id: r.get(11)?,
        charge_start: r.get(12)?,
        charge_end: r.get(13)?,
        basis: r.get(14)?,
        rate: r.get(15)?,
        share: r.get(16)?,
        amount: r.get(17)?,
        currency: r.get(18)?,
        designation_line: r.get::<_, Option<i64>>(19)?.map(|n| n as u64),
        line_amount: r.get(20)?,
        reverses: r.get(21)?,
    })
}

/// The history as the engine's [`reverse::ClosedCharges`]: one read-only
/// connection, asked once per credit line (credits are few) through the
/// indexes, under a lock shared by the workers.
pub struct ClosedLookup {
    history: std::sync::Mutex<History>,
    /// The period being run: a restatement re-accrues it from its own
    /// files, so its credits never reverse its own issued charges.
    own_period: Option<String>,
}

impl ClosedLookup {
    /// Holds one read transaction for the whole run, so that every credit
    /// sees the same history even if a `close` commits meanwhile.
    /// `own_period`: the period label of the run (`None` for `validate`
    /// without `--period`).
    pub fn new(mut h: History, own_period: Option<String>) -> Result<ClosedLookup, HistoryError> {
        h.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| sql(&h.path, e))?;
        // The first read starts the transaction's snapshot: its layout is
        // the one every look-up uses.
        h.read_schema()?;
        Ok(ClosedLookup {
            history: std::sync::Mutex::new(h),
            own_period,
        })
    }
}

impl reverse::ClosedCharges for ClosedLookup {
    fn charge(&self, key: &reverse::ChargeKey) -> Result<Option<reverse::Charge>, String> {
        let h = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A few charges are enough to name them; the rest are counted.
        let more = std::cell::Cell::new(0u64);
        let lookup = |key: &reverse::ChargeKey| {
            let (found, n) = h
                .closed_charges_capped(key, reverse::NAMED + 1, self.own_period.as_deref())
                .map_err(|e| e.to_string())?;
            more.set(more.get() + n);
            Ok::<_, String>(found)
        };
        // IDs differ in letter case between exports (GUIDs above all). From
        // schema version 4 on, the history stores reference IDs folded and
        // `closed_charges` folds the credit's: one look-up finds any case.
        let mut found = lookup(key)?;
        // An older history (read as it is, never upgraded by a reader) has
        // them as written: a `ReferenceId` found as written, else in lower,
        // else in upper case.
        let older = h.schema < 4;
        if let (true, true, Some(r)) = (older, found.is_empty(), key.reference()) {
            for spelled in [r.to_lowercase(), r.to_uppercase()] {
                if spelled != r {
                    let k = reverse::ChargeKey {
                        reference_id: spelled,
                        ..key.clone()
                    };
                    found = lookup(&k)?;
                    if !found.is_empty() {
                        break;
                    }
                }
            }
        }
        // Not under its whole key: a product or SKU one side does not know
        // may be any value (a file without the column); every such charge
        // is a candidate. In a history older than schema version 5 a miss
        // may be a product or SKU stored in another letter case, so a
        // charge recorded without them is no candidate for a credit naming
        // them (it may be another charge of the subscription).
        let loose: Vec<reverse::ChargeKey> = key
            .unknown_parts()
            .into_iter()
            .filter(|k| h.schema >= 5 || k.scope != reverse::Scope::Whole)
            .collect();
        if found.is_empty() {
            for k in &loose {
                found.extend(lookup(k)?);
            }
        }
        if found.is_empty() {
            // Not in the latest versions: a charge a restatement removed is
            // still not a new line to accrue.
            let mut gone = Vec::new();
            for k in std::iter::once(key).chain(&loose) {
                gone.extend(h.superseded_charges(k).map_err(|e| e.to_string())?);
                if !gone.is_empty() {
                    break;
                }
            }
            gone.retain(|(c, _)| Some(&c.period) != self.own_period.as_ref());
            gone.retain(|(c, _)| {
                crate::ingest::id_key(c.accrual.customer_id.trim()) == key.customer_id
            });
            if let Some((c, latest)) = gone.first() {
                return Err(format!(
                    "the charge it credits, {}, was issued in {} version {} and is not in \
                     version {latest}, which restated the period and took its accruals back: \
                     nothing of it is left to reverse",
                    reverse::reverses_label(c),
                    c.period,
                    c.version
                ));
            }
            return Ok(None);
        }
        // A ReferenceId reused across tenants names charges of several
        // customers: the credit's own customer's are the candidates (when
        // none is, `own_customer` names the other's).
        let own = |c: &ClosedAccrual| {
            crate::ingest::id_key(c.accrual.customer_id.trim()) == key.customer_id
        };
        if found.iter().any(own) {
            found.retain(own);
        }
        let Some(accruals) = reverse::one_charge(found, more.get())? else {
            return Ok(None);
        };
        reverse::own_customer(key, &accruals)?;
        let credited = match accruals.first() {
            Some(a) => h
                .credited(a, self.own_period.as_deref())
                .map_err(|e| e.to_string())?,
            None => rust_decimal::Decimal::ZERO,
        };
        Ok(Some(reverse::Charge { accruals, credited }))
    }
}

impl History {
    /// Whether the run `run` of `period` (what its manifest says of the
    /// history it read) may be read against this history by a command that
    /// takes its closed months from here (`tieout --history`): the run was
    /// computed against this history, and no period before its own was closed
    /// (or restated) since it read it, the checks `close` makes. A run whose
    /// credits reversed version 1 of a month restated since as version 2
    /// would be compared with version 2's accruals. `then`: what to do with
    /// the run made again, for the message (`tie out`).
    pub fn check_read_by(
        &self,
        period: &str,
        run: &RunHistory,
        then: &str,
    ) -> Result<(), HistoryError> {
        let recorded = recorded(&self.conn).map_err(|e| sql(&self.path, e))?;
        same_history(&self.path, &recorded, period, run, then)
    }
}

/// Why a close failed: the history, or the source of the accruals.
#[derive(Debug)]
pub enum CloseError<E> {
    History(HistoryError),
    Source(E),
}

/// A close as a new close is checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Recorded {
    period: String,
    version: u32,
    manifest_sha256: String,
}

/// Every close of the history, in the order recorded (a few rows: one per
/// issued version).
fn recorded(conn: &Connection) -> rusqlite::Result<Vec<Recorded>> {
    let mut st =
        conn.prepare_cached("SELECT period, version, manifest_sha256 FROM closes ORDER BY id")?;
    let rows = st.query_map([], |r| {
        Ok(Recorded {
            period: r.get(0)?,
            version: r.get(1)?,
            manifest_sha256: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// The version a close of `rec` would record in the history at `path`
/// (`None`: it does not exist yet, or is empty), or why it would be refused:
/// what [`History::close`] decides in its transaction, asked before the
/// work (`close` asks first so that a refused close fails at once).
///
/// A run made with `--history` ([`RunHistory`]) is recorded only into a
/// history whose first closes are the ones it read, and a restatement only
/// when the version it restates is this history's latest version of its
/// period, the very close (by its manifest's SHA-256). The manifest of a
/// run made by an older porledger does not say which history it read: it
/// is still recorded as a first close of its period (what that porledger
/// did), but a restatement is refused (run it again).
pub fn check_close(
    path: &Path,
    history: Option<&History>,
    rec: &CloseRecord,
) -> Result<u32, HistoryError> {
    let recorded = match history {
        Some(h) => recorded(&h.conn).map_err(|e| sql(&h.path, e))?,
        None => Vec::new(),
    };
    next_version(path, &recorded, rec)
}

/// [`check_close`] against the closes `recorded`.
fn next_version(
    path: &Path,
    recorded: &[Recorded],
    rec: &CloseRecord,
) -> Result<u32, HistoryError> {
    let period = rec.period.as_str();
    let refused = |message: String| HistoryError::Refused {
        path: path.display().to_string(),
        message,
    };
    // A run made without --history read no closes: like a run that read
    // this history before any of them, it is refused once an earlier
    // period is closed (its credits of that period's charges and its usage
    // growth were worked out without it); a first close, or a close of a
    // period before every closed one, is as before.
    // A period that shares months with a closed one can never be closed:
    // said first, whatever history the run read.
    if let Some((closed, version)) = overlapping(path, recorded, period)? {
        return Err(overlap_refused(path, period, closed, version));
    }
    match &rec.run {
        Some(run) => same_history(path, recorded, period, run, "close")?,
        None => unseen_earlier(path, recorded, period, 0, Unseen::NoHistory, "close")?,
    }
    let issued = recorded
        .iter()
        .filter(|c| c.period == period)
        .max_by_key(|c| c.version);
    let wanted = rec
        .run
        .as_ref()
        .and_then(|r| r.restates_manifest_sha256.as_deref());
    match (issued.map(|c| c.version), rec.restates()) {
        (None, None) => Ok(1),
        (Some(n), Some(r)) if n == r => match (issued, wanted) {
            (Some(c), Some(w)) if c.manifest_sha256 != w => Err(refused(format!(
                "the run in --out restates version {r} of period {period} as issued with manifest \
                 sha256 {w}, but this history's version {r} has manifest sha256 {}: the run was \
                 computed against another history. Run the period again with --history {}, then \
                 close that run",
                c.manifest_sha256,
                path.display()
            ))),
            _ => Ok(n + 1),
        },
        (Some(n), None) => Err(refused(format!(
            "period {period} is already closed (version {n}); issued statements never change. To correct it, run the period again with --history so the run publishes adjustment statements, then close that run (version {})",
            n + 1
        ))),
        (Some(n), Some(r)) => Err(refused(format!(
            "the run in --out restates version {r} of period {period}, but version {n} has been issued since; run the period again with --history"
        ))),
        (None, Some(r)) => Err(refused(format!(
            "the run in --out restates version {r} of period {period}, which this history does not hold: it was computed against another history. Run the period again with --history {}, then close that run",
            path.display()
        ))),
    }
}

/// The closed period of another label than `period` that shares a month
/// with it (the first in label order), with its latest version. Periods are
/// compared by their months, not their labels: `2026-09..2026-10` and
/// `2026-10..2026-11` both overlap a closed `2026-10`, and a period that
/// contains a closed one or lies inside one overlaps it too. Two periods
/// that only touch (`2026-09` and `2026-10`) do not. A label that is not a
/// period is refused: `period` as given, a recorded one as damage.
fn overlapping<'a>(
    path: &Path,
    recorded: &'a [Recorded],
    period: &str,
) -> Result<Option<(&'a str, u32)>, HistoryError> {
    let refused = |message: String| HistoryError::Refused {
        path: path.display().to_string(),
        message,
    };
    let p: crate::dates::Period = period
        .parse()
        .map_err(|e| refused(format!("period '{period}' cannot be closed: {e}")))?;
    let mut found: BTreeMap<&str, u32> = BTreeMap::new();
    for c in recorded.iter().filter(|c| c.period != period) {
        let q: crate::dates::Period = c.period.parse().map_err(|e| {
            refused(format!(
                "the closed period '{}' cannot be read ({e}): the history is damaged",
                c.period
            ))
        })?;
        if p.start < q.end && q.start < p.end {
            let v = found.entry(&c.period).or_default();
            *v = (*v).max(c.version);
        }
    }
    Ok(found.into_iter().next())
}

/// Why `period` cannot be closed (or run with `--history`): it shares months
/// with `closed`, issued as `version`.
fn overlap_refused(path: &Path, period: &str, closed: &str, version: u32) -> HistoryError {
    HistoryError::Refused {
        path: path.display().to_string(),
        message: format!(
            "period {period} shares months with the closed period {closed} (version {version}): \
             their billing lines would be issued twice. Issued is issued: to correct {closed}, \
             run it again as --period {closed} with --history (the run publishes adjustment \
             statements) and close that run; a new period must leave out the months of {closed}"
        ),
    }
}

/// [`Seen`] of the closes `recorded`.
fn seen_of(recorded: &[Recorded]) -> Seen {
    let mut text = String::new();
    for c in recorded {
        text.push_str(&format!(
            "{}\t{}\t{}\n",
            c.period, c.version, c.manifest_sha256
        ));
    }
    Seen {
        closes: recorded.len() as u64,
        sha256: crate::ingest::sha256_hex(text.as_bytes()),
    }
}

/// Why a run did not see a close of an earlier period.
#[derive(Clone, Copy)]
enum Unseen {
    /// The close was recorded after the run read the history.
    ClosedSince,
    /// The run read no history.
    NoHistory,
}

/// Refuses a run of `period` that read the history when it held only the
/// first `seen` closes of `recorded` (none: `why` is [`Unseen::NoHistory`]),
/// when a close it did not see is of an earlier period: that close may hold
/// the charges the run's credits reverse and the usage marks its growth is
/// measured from. (A later period changes nothing a run computes.)
fn unseen_earlier(
    path: &Path,
    recorded: &[Recorded],
    period: &str,
    seen: usize,
    why: Unseen,
    then: &str,
) -> Result<(), HistoryError> {
    let p: Option<crate::dates::Period> = period.parse().ok();
    let earlier = recorded.get(seen..).unwrap_or_default().iter().find(|c| {
        let q: Option<crate::dates::Period> = c.period.parse().ok();
        match (&p, q) {
            (Some(p), Some(q)) => q.start < p.start,
            _ => true,
        }
    });
    let Some(c) = earlier else {
        return Ok(());
    };
    let here = path.display();
    let how = match why {
        Unseen::ClosedSince => "it was closed after the run in --out read this history",
        Unseen::NoHistory => "the run in --out was made without --history",
    };
    Err(HistoryError::Refused {
        path: here.to_string(),
        message: format!(
            "period {} (version {}) is closed, and {how}: the run's credits against closed \
             months and its usage growth were worked out without it; run the period again with \
             --history {here}, then {then} that run",
            c.period, c.version
        ),
    })
}

/// Refuses the run `run` of `period` unless it was computed against this
/// history (holding `recorded`): its first closes are the ones the run read.
/// A run whose manifest does not say (an older porledger) is refused when
/// it restates a version, which could be another history's.
fn same_history(
    path: &Path,
    recorded: &[Recorded],
    period: &str,
    run: &RunHistory,
    then: &str,
) -> Result<(), HistoryError> {
    let here = path.display().to_string();
    let again = format!("run the period again with --history {here}, then {then} that run");
    let refused = |message: String| HistoryError::Refused {
        path: here.clone(),
        message,
    };
    let (Some(n), Some(sha)) = (run.closes, run.closes_sha256.as_deref()) else {
        return match run.restates {
            Some(r) => Err(refused(format!(
                "the run in --out restates version {r} of period {period} but does not say which \
                 history it was computed against (its manifest was written by an older porledger), \
                 so close cannot tell that it restates this history's version {r}; {again}"
            ))),
            None => Ok(()),
        };
    };
    let held = recorded.len() as u64;
    let same = usize::try_from(n)
        .ok()
        .and_then(|n| recorded.get(..n))
        .is_some_and(|first| seen_of(first).sha256 == sha);
    if same {
        return unseen_earlier(
            path,
            recorded,
            period,
            n as usize,
            Unseen::ClosedSince,
            then,
        );
    }
    let file = run.file.as_deref().unwrap_or("its --history");
    let what = match (run.restates, &run.restates_manifest_sha256) {
        (Some(r), Some(m)) => format!(
            "restates version {r} of period {period} as issued in {file} (manifest sha256 {m}), \
             not in this history"
        ),
        (Some(r), None) => {
            format!(
                "restates version {r} of period {period} as issued in {file}, not in this history"
            )
        }
        (None, _) => format!("was computed against {file}, not against this history"),
    };
    let closes = |n: u64| match n {
        1 => "1 close".to_string(),
        n => format!("{n} closes"),
    };
    let why = if n > held {
        format!(
            "it held {} when the run read it, this history holds {}",
            closes(n),
            closes(held)
        )
    } else {
        match n {
            1 => "this history's first close is not the one the run read".to_string(),
            n => format!("this history's first {n} closes are not the ones the run read"),
        }
    };
    Err(refused(format!(
        "the run in --out {what} ({why}): its adjustments and its credits against closed months \
         were worked out from what that history issued; {again}"
    )))
}

fn latest(conn: &Connection, period: &str) -> rusqlite::Result<Option<u32>> {
    conn.query_row(
        "SELECT max(version) FROM closes WHERE period = ?1",
        params![period],
        |r| r.get(0),
    )
    .optional()
    .map(Option::flatten)
}

/// Inserts the close's row (its counts are set by [`insert_statements`]),
/// inputs and outputs; returns its id.
fn insert_close(tx: &Transaction, rec: &CloseRecord, version: u32) -> rusqlite::Result<i64> {
    tx.execute(
        "INSERT INTO closes(period, version, restates, manifest_sha256, tool_version, rounding, accruals, partners)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0)",
        params![
            rec.period,
            version,
            rec.restates(),
            rec.manifest_sha256,
            rec.tool_version,
            rec.rounding,
        ],
    )?;
    let id = tx.last_insert_rowid();
    let mut st = tx.prepare(
        "INSERT INTO inputs(close_id, path, role, sha256, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for f in &rec.inputs {
        st.execute(params![id, f.path, f.role, f.sha256, f.bytes as i64])?;
    }
    let mut st =
        tx.prepare("INSERT INTO outputs(close_id, path, sha256, bytes) VALUES (?1, ?2, ?3, ?4)")?;
    for f in &rec.outputs {
        st.execute(params![id, f.path, f.sha256, f.bytes as i64])?;
    }
    Ok(id)
}

/// Inserts the statement lines, totals, designations and usage marks of
/// close `id` and sets its counts.
fn insert_statements(
    tx: &Transaction,
    id: i64,
    rec: &CloseRecord,
    accruals: u64,
) -> rusqlite::Result<()> {
    let partners = rec
        .totals
        .iter()
        .map(|t| t.partner_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    tx.execute(
        "UPDATE closes SET accruals = ?1, partners = ?2 WHERE id = ?3",
        params![accruals as i64, partners as i64, id],
    )?;
    {
        let mut st = tx.prepare(
            "INSERT INTO statement_lines(close_id, partner_id, partner_name, customer_id, customer_name,
               program_id, accrual_month, currency, lines, basis, amount)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?;
        for l in &rec.lines {
            st.execute(params![
                id,
                l.partner_id,
                l.partner_name,
                l.customer_id,
                l.customer_name,
                l.program_id,
                l.accrual_month,
                l.currency,
                l.lines as i64,
                l.basis,
                l.amount
            ])?;
        }
        let mut st = tx.prepare(
            "INSERT INTO statement_totals(close_id, partner_id, partner_name, currency, amount)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for t in &rec.totals {
            st.execute(params![
                id,
                t.partner_id,
                t.partner_name,
                t.currency,
                t.amount
            ])?;
        }
        let mut st = tx.prepare(
            "INSERT INTO designations(close_id, partner_id, customer_id, association, subscription_id,
               workload, share, valid_from, valid_to, source_line)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
        for d in &rec.designations {
            st.execute(params![
                id,
                d.partner_id,
                d.customer_id,
                d.association,
                d.subscription_id,
                d.workload,
                d.share,
                d.valid_from,
                d.valid_to,
                d.source_line as i64
            ])?;
        }
        // The latest close of a month's usage wins (a restatement may carry a
        // corrected usage report); the marks of the version it restates go
        // first, so that a row the restatement no longer has is not kept.
        tx.execute(
            "DELETE FROM usage_marks WHERE close_id IN
               (SELECT id FROM closes WHERE period = ?1 AND id <> ?2)",
            params![rec.period, id],
        )?;
        let mut st = tx.prepare(
            "INSERT INTO usage_marks(customer_id, workload, month, mau, close_id) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(customer_id, workload, month) DO UPDATE SET mau = excluded.mau, close_id = excluded.close_id",
        )?;
        for u in &rec.usage {
            st.execute(params![u.customer_id, u.workload, u.month, u.mau, id])?;
        }
    }
    Ok(())
}

/// An accrual block ends at the first run boundary after this many rows.
const BLOCK_ROWS: u32 = 256;
/// Entries per key block.
const KEY_ENTRIES: u32 = 256;
/// The fields of an accrual row in a block (see [`accrual_fields`]).
const ACCRUAL_WIDTH: usize = 22;

/// `a`'s fields in block order: the columns of [`ACCRUAL_COLUMNS`], then
/// `line_amount` and `reverses`. `line` and `designation` are the two
/// numbers as text.
fn accrual_fields<'a>(
    a: &AccrualView<'a>,
    line: &'a str,
    designation: &'a str,
) -> [Option<&'a [u8]>; ACCRUAL_WIDTH] {
    let t = |s: &'a str| Some(s.as_bytes());
    let o = |s: Option<&'a str>| s.map(str::as_bytes);
    [
        t(a.partner_id),
        t(a.customer_id),
        t(a.program_id),
        t(a.association),
        t(a.subscription_id),
        t(a.charge_date),
        t(a.accrual_month),
        t(a.source_file),
        t(line),
        o(a.reference_id),
        o(a.product_id),
        o(a.sku_id),
        o(a.charge_start),
        o(a.charge_end),
        t(a.basis),
        t(a.rate),
        t(a.share),
        t(a.amount),
        t(a.currency),
        a.designation_line.map(|_| designation.as_bytes()),
        o(a.line_amount),
        o(a.reverses),
    ]
}

/// The accrual block in column 2 (`data`) of `r`, a row of `first, rows,
/// data`, holding `count` rows.
fn block_at(r: &rusqlite::Row<'_>, count: i64) -> Result<block::Block, String> {
    let rows = usize::try_from(count).map_err(|_| format!("{count} rows"))?;
    let blob = r
        .get_ref(2)
        .map_err(|e| e.to_string())?
        .as_blob()
        .map_err(|e| e.to_string())?;
    block::Block::decode(blob, ACCRUAL_WIDTH, rows)
}

/// `line` and `designation` (empty when `None`) as decimal text in `buf`,
/// without allocating.
fn two_numbers(buf: &mut [u8; 40], line: u64, designation: Option<u64>) -> (&str, &str) {
    use std::io::Write;
    let mut cur = std::io::Cursor::new(&mut buf[..]);
    write!(cur, "{line}").expect("20 digits fit");
    let mid = cur.position() as usize;
    if let Some(d) = designation {
        write!(cur, "{d}").expect("20 digits fit");
    }
    let end = cur.position() as usize;
    let (a, b) = buf[..end].split_at(mid);
    let text = |b| std::str::from_utf8(b).expect("digits are ASCII");
    (text(a), text(b))
}

/// Row `i` of an accrual block; the error names what is missing or wrong.
fn accrual_at(b: &block::Block, i: usize) -> Result<AccrualRec, String> {
    let o = |c: usize| b.text(i, c).map(|v| v.map(str::to_string));
    let t = |c: usize| o(c)?.ok_or_else(|| format!("row {i} has no field {c}"));
    let n = |c: usize| -> Result<Option<u64>, String> {
        o(c)?
            .map(|v| {
                v.parse()
                    .map_err(|_| format!("row {i}: '{v}' is not a whole number"))
            })
            .transpose()
    };
    Ok(AccrualRec {
        partner_id: t(0)?,
        customer_id: t(1)?,
        program_id: t(2)?,
        association: t(3)?,
        subscription_id: t(4)?,
        charge_date: t(5)?,
        accrual_month: t(6)?,
        source_file: t(7)?,
        source_line: n(8)?.ok_or_else(|| format!("row {i} has no source line"))?,
        reference_id: o(9)?,
        product_id: o(10)?,
        sku_id: o(11)?,
        charge_start: o(12)?,
        charge_end: o(13)?,
        basis: t(14)?,
        rate: t(15)?,
        share: t(16)?,
        amount: t(17)?,
        currency: t(18)?,
        designation_line: n(19)?,
        line_amount: o(20)?,
        reverses: o(21)?,
    })
}

/// A part of a close's accruals as stored (schema version 3), built by
/// [`AccrualEncoder`] without SQL (so on any thread) and written by
/// [`History::close_encoded`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredPart {
    /// A block of accruals: the ordinal of its first row in the close, its
    /// rows, its uncompressed bytes (compressed by the writer, which has
    /// time for it while the encoder reads the next rows).
    Block { first: u64, rows: u32, raw: Vec<u8> },
    /// An accrual that reverses a closed one: what it reverses, its billing
    /// line and the line's amount.
    Reversal {
        reverses: String,
        source_file: String,
        source_line: u64,
        line_amount: Option<String>,
    },
    /// Block `seq` of the charge keys of `kind` (0 references, 1
    /// subscription + product + SKU), starting at `first_key`, uncompressed.
    Keys {
        kind: u8,
        seq: u32,
        first_key: Vec<u8>,
        entries: u32,
        raw: Vec<u8>,
    },
    /// The last part: the key filters and the number of accruals.
    End {
        references: Vec<u8>,
        subscriptions: Vec<u8>,
        accruals: u64,
    },
}

/// Turns a close's accruals, in recorded order, into [`StoredPart`]s.
pub struct AccrualEncoder {
    w: block::Writer,
    keys: ChargeKeys,
    /// Ordinal of the open block's first row; rows so far.
    first: u64,
    n: u64,
    /// The source file and line of the current run.
    run: Option<(String, u64)>,
}

impl Default for AccrualEncoder {
    fn default() -> Self {
        AccrualEncoder {
            w: block::Writer::new(ACCRUAL_WIDTH),
            keys: ChargeKeys::default(),
            first: 0,
            n: 0,
            run: None,
        }
    }
}

impl AccrualEncoder {
    /// Adds the next accrual; `emit` gets the parts it completes.
    pub fn push(&mut self, a: &AccrualView<'_>, emit: &mut impl FnMut(StoredPart)) {
        // The keys are the source line's (joined by file and line), so the
        // line alone says where a run ends.
        let same = self
            .run
            .as_ref()
            .is_some_and(|(f, l)| *l == a.source_line && f == a.source_file);
        if !same {
            if self.w.rows() >= BLOCK_ROWS {
                self.flush(emit);
                self.first = self.n;
            }
            self.keys.head(a, self.n);
            match &mut self.run {
                Some((f, l)) => {
                    f.clear();
                    f.push_str(a.source_file);
                    *l = a.source_line;
                }
                None => self.run = Some((a.source_file.to_string(), a.source_line)),
            }
        }
        if let Some(rev) = a.reverses {
            emit(StoredPart::Reversal {
                reverses: rev.to_string(),
                source_file: a.source_file.to_string(),
                source_line: a.source_line,
                line_amount: a.line_amount.map(str::to_string),
            });
        }
        let mut digits = [0u8; 40];
        let (line, designation) = two_numbers(&mut digits, a.source_line, a.designation_line);
        self.w.push(&accrual_fields(a, line, designation));
        self.n += 1;
    }

    fn flush(&mut self, emit: &mut impl FnMut(StoredPart)) {
        let rows = self.w.rows();
        emit(StoredPart::Block {
            first: self.first,
            rows,
            raw: self.w.take(),
        });
    }

    /// The last block, the key blocks and [`StoredPart::End`].
    pub fn finish(mut self, emit: &mut impl FnMut(StoredPart)) {
        if self.w.rows() > 0 {
            self.flush(emit);
        }
        let (references, subscriptions) = self.keys.encode(emit);
        emit(StoredPart::End {
            references,
            subscriptions,
            accruals: self.n,
        });
    }
}

/// The parts of `rows` ([`AccrualEncoder`] as an iterator adapter); an
/// error of the source is passed on and ends the parts.
pub fn encode<I, E>(rows: I) -> impl Iterator<Item = Result<StoredPart, E>>
where
    I: IntoIterator<Item = Result<AccrualRec, E>>,
{
    let mut rows = rows.into_iter();
    let mut enc = Some(AccrualEncoder::default());
    let mut ready = std::collections::VecDeque::new();
    std::iter::from_fn(move || loop {
        if let Some(p) = ready.pop_front() {
            return Some(Ok(p));
        }
        let e = enc.as_mut()?;
        match rows.next() {
            Some(Ok(a)) => e.push(&a.view(), &mut |p| ready.push_back(p)),
            Some(Err(err)) => {
                enc = None;
                return Some(Err(err));
            }
            None => enc.take()?.finish(&mut |p| ready.push_back(p)),
        }
    })
}

/// Writes the parts of close `id`; returns the number of accruals (from
/// [`StoredPart::End`], which must come last).
fn store_parts<I, E>(tx: &Transaction, id: i64, parts: I) -> Result<u64, CloseError<E>>
where
    I: IntoIterator<Item = Result<StoredPart, E>>,
{
    let path = tx.path().unwrap_or("history").to_string();
    let s = |e| {
        CloseError::History(HistoryError::Sqlite {
            path: path.clone(),
            source: e,
        })
    };
    let mut blocks = tx
        .prepare("INSERT INTO accrual_blocks(close_id, first, rows, data) VALUES (?1, ?2, ?3, ?4)")
        .map_err(s)?;
    let mut reversals = tx
        .prepare(
            "INSERT INTO reversals(close_id, reverses, source_file, source_line, line_amount)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(s)?;
    let mut keys = tx
        .prepare(
            "INSERT INTO charge_keys(close_id, kind, seq, first_key, entries, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(s)?;
    let mut sealer = block::Sealer::default();
    for part in parts {
        match part.map_err(CloseError::Source)? {
            StoredPart::Block { first, rows, raw } => {
                if raw.len() > block::MAX_RAW {
                    return Err(CloseError::History(HistoryError::Refused {
                        path: path.clone(),
                        message: format!(
                            "{rows} accruals from row {first} take {} bytes, more than a block may hold ({}): nothing was recorded",
                            raw.len(),
                            block::MAX_RAW
                        ),
                    }));
                }
                blocks.execute(params![id, first as i64, rows, sealer.seal(&raw)])
            }
            StoredPart::Reversal {
                reverses,
                source_file,
                source_line,
                line_amount,
            } => reversals.execute(params![id, reverses, source_file, source_line as i64, line_amount]),
            StoredPart::Keys {
                kind,
                seq,
                first_key,
                entries,
                raw,
            } => keys.execute(params![id, kind, seq, first_key, entries, sealer.seal(&raw)]),
            StoredPart::End {
                references,
                subscriptions,
                accruals,
            } => {
                tx.execute(
                    "INSERT OR REPLACE INTO charge_filters(close_id, references_filter, subscriptions_filter)
                     VALUES (?1, ?2, ?3)",
                    params![id, references, subscriptions],
                )
                .map_err(s)?;
                return Ok(accruals);
            }
        }
        .map_err(s)?;
    }
    Err(CloseError::History(HistoryError::Refused {
        path: path.clone(),
        message: "the accruals ended before their last part: nothing was recorded".into(),
    }))
}

/// The heads of a close's runs by key, for [`ChargeKeys::encode`].
#[derive(Default)]
struct ChargeKeys {
    /// (reference ID, trimmed and folded by `id_key`, ordinal of the head)
    refs: Vec<(Vec<u8>, u64)>,
    /// (subscription, product, SKU joined by 0xff, each an ID key, ordinal
    /// of the head)
    subs: Vec<(Vec<u8>, u64)>,
}

/// The least byte string above every one starting with `prefix`: `None`
/// when there is none (`prefix` is 0xff bytes only).
fn above_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut above = prefix.to_vec();
    while above.last() == Some(&0xff) {
        above.pop();
    }
    *above.last_mut()? += 1;
    Some(above)
}

/// A key of kind 1: its parts joined by 0xff (see `SCHEMA_V3`).
fn joined_key(subscription: &str, product: &str, sku: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(subscription.len() + product.len() + sku.len() + 2);
    for (i, p) in [subscription, product, sku].iter().enumerate() {
        if i > 0 {
            k.push(0xff);
        }
        k.extend_from_slice(p.as_bytes());
    }
    k
}

impl ChargeKeys {
    /// Notes the head of a run, at ordinal `at` of its close, under its
    /// keys, if a later credit can match it at all (see
    /// [`reverse::matches`]: not a reversal, not a credit, source keys
    /// recorded). A head without the line's amount is left out too: only a
    /// version 1 close recorded such rows (a run's keys always come with its
    /// amount), and version 2 never indexed those, so converted rows match
    /// what they matched before: nothing.
    fn head(&mut self, a: &AccrualView<'_>, at: u64) {
        let credit = a
            .line_amount
            .is_none_or(|x| x.trim_start().starts_with('-'));
        if a.reverses.is_some() || credit {
            return;
        }
        if let Some(r) = a.reference_id.map(str::trim).filter(|r| !r.is_empty()) {
            // Folded like every ID (see `SCHEMA_V4`).
            self.refs.push((crate::ingest::id_key(r).into_bytes(), at));
        }
        // The subscription is its ID key already (the ledger's); product
        // and SKU are folded the same way (see `SCHEMA_V5`). A charge
        // without a product (a file without `ProductId`, or an empty one)
        // is indexed under the empty product, as one without a SKU under
        // the empty SKU: a credit without either finds it.
        let product = crate::ingest::id_key(a.product_id.unwrap_or("").trim());
        let sku = crate::ingest::id_key(a.sku_id.unwrap_or("").trim());
        self.subs
            .push((joined_key(a.subscription_id, &product, &sku), at));
    }

    /// Emits both key lists, sorted, as key blocks; returns their filters
    /// (references, subscriptions).
    fn encode(mut self, emit: &mut impl FnMut(StoredPart)) -> (Vec<u8>, Vec<u8>) {
        let references = encode_keys(0, &mut self.refs, emit);
        let subscriptions = encode_keys(1, &mut self.subs, emit);
        (references, subscriptions)
    }
}

/// Sorts one kind's key list (key, ordinal of the head) and emits it as key
/// blocks of at most [`KEY_ENTRIES`] entries, numbered from 0 in key order,
/// each with its first key; returns the list's filter.
fn encode_keys(
    kind: u8,
    list: &mut [(Vec<u8>, u64)],
    emit: &mut impl FnMut(StoredPart),
) -> Vec<u8> {
    list.sort_unstable();
    let mut f = filter::KeyFilter::with_capacity(list.len());
    let mut w = block::Writer::new(2);
    let (mut start, mut seq) = (0usize, 0u32);
    let mut flush = |w: &mut block::Writer, first_key: &[u8], seq: &mut u32| {
        emit(StoredPart::Keys {
            kind,
            seq: *seq,
            first_key: first_key.to_vec(),
            entries: w.rows(),
            raw: w.take(),
        });
        *seq += 1;
    };
    for (i, (k, at)) in list.iter().enumerate() {
        if i == 0 || list[i - 1].0 != *k {
            f.insert_joined(k);
        }
        if w.rows() >= KEY_ENTRIES {
            flush(&mut w, &list[start].0, &mut seq);
            start = i;
        }
        w.push(&[Some(k), Some(at.to_string().as_bytes())]);
    }
    if w.rows() > 0 {
        flush(&mut w, &list[start].0, &mut seq);
    }
    f.to_bytes()
}

/// Folds the keys of `kind` of the closes recorded before they were stored
/// folded: kind 0 (reference IDs, as written until schema version 4, see
/// `SCHEMA_V4`) to their ID key; kind 1 (subscription, product and SKU
/// joined by 0xff; product and SKU as written until version 5, see
/// `SCHEMA_V5`) with product and SKU folded to their ID key (the
/// subscription is one already). Per close, its key blocks of `kind` are
/// decoded, each key folded, the list sorted and written again by
/// [`encode_keys`] with that kind's filter, as a close of this build writes
/// them. A close whose keys are folded already (all in lower case, as GUIDs
/// mostly are) is left as it is; the other kind's keys and filter and
/// everything else are never touched. Part of the upgrade's transaction.
fn fold_keys(tx: &Transaction, path: &Path, kind: u8) -> Result<(), HistoryError> {
    let s = |e| sql(path, e);
    let damaged = |id: i64, what: String| HistoryError::Refused {
        path: path.display().to_string(),
        message: format!("close {id}: {what}: the history is damaged; it was not upgraded"),
    };
    let fold = |key: &[u8]| -> Result<Vec<u8>, String> {
        let text = |part: &[u8]| {
            std::str::from_utf8(part)
                .map(|t| crate::ingest::id_key(t.trim()))
                .map_err(|_| "a key that is not UTF-8 text".to_string())
        };
        if kind == 0 {
            return text(key).map(String::into_bytes);
        }
        let parts: Vec<&[u8]> = key.split(|b| *b == 0xff).collect();
        let [subscription, product, sku] = parts[..] else {
            return Err(format!(
                "a subscription key of {} parts, not 3",
                parts.len()
            ));
        };
        let subscription =
            std::str::from_utf8(subscription).map_err(|_| "a key that is not UTF-8 text")?;
        Ok(joined_key(subscription, &text(product)?, &text(sku)?))
    };
    let ids: Vec<i64> = tx
        .prepare("SELECT DISTINCT close_id FROM charge_keys WHERE kind = ?1 ORDER BY close_id")
        .and_then(|mut st| st.query_map(params![kind], |r| r.get(0))?.collect())
        .map_err(s)?;
    let mut blocks = tx
        .prepare(
            "SELECT entries, data FROM charge_keys WHERE close_id = ?1 AND kind = ?2 ORDER BY seq",
        )
        .map_err(s)?;
    for id in ids {
        let mut list: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut changed = false;
        let mut rows = blocks.query(params![id, kind]).map_err(s)?;
        while let Some(r) = rows.next().map_err(s)? {
            let entries: i64 = r.get(0).map_err(s)?;
            let blob = r
                .get_ref(1)
                .and_then(|v| v.as_blob().map_err(Into::into))
                .map_err(s)?;
            let entries = usize::try_from(entries)
                .map_err(|_| damaged(id, format!("a key block of {entries} entries")))?;
            let b = block::Block::decode(blob, 2, entries)
                .map_err(|e| damaged(id, format!("a key block: {e}")))?;
            for i in 0..b.rows() {
                let at = b
                    .text(i, 1)
                    .map_err(|e| damaged(id, e))?
                    .and_then(|t| t.parse().ok());
                let (Some(key), Some(at)) = (b.bytes(i, 0), at) else {
                    return Err(damaged(id, format!("key entry {i} has no key or no row")));
                };
                let folded = fold(key).map_err(|e| damaged(id, format!("key entry {i}: {e}")))?;
                changed |= folded != key;
                list.push((folded, at));
            }
        }
        drop(rows);
        if changed {
            replace_keys(tx, path, id, kind, &mut list)?;
        }
    }
    Ok(())
}

/// Writes `list` (key, ordinal of the head) as close `id`'s key blocks of
/// `kind`, in place of those it has, with that kind's filter made from it;
/// the other kind's blocks and filter stay as they are.
fn replace_keys(
    tx: &Transaction,
    path: &Path,
    id: i64,
    kind: u8,
    list: &mut [(Vec<u8>, u64)],
) -> Result<(), HistoryError> {
    let s = |e| sql(path, e);
    let (references, subscriptions): (Vec<u8>, Vec<u8>) = tx
        .prepare_cached(
            "SELECT references_filter, subscriptions_filter FROM charge_filters WHERE close_id = ?1",
        )
        .and_then(|mut st| {
            st.query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(s)?
        .ok_or_else(|| HistoryError::Refused {
            path: path.display().to_string(),
            message: format!(
                "close {id}: keys without a filter: the history is damaged; it was not upgraded"
            ),
        })?;
    tx.execute(
        "DELETE FROM charge_keys WHERE close_id = ?1 AND kind = ?2",
        params![id, kind],
    )
    .map_err(s)?;
    let mut parts = Vec::new();
    let filter = encode_keys(kind, list, &mut |p| parts.push(p));
    parts.push(match kind {
        0 => StoredPart::End {
            references: filter,
            subscriptions,
            accruals: 0,
        },
        _ => StoredPart::End {
            references,
            subscriptions: filter,
            accruals: 0,
        },
    });
    store_parts(
        tx,
        id,
        parts.into_iter().map(Ok::<_, std::convert::Infallible>),
    )
    .map_err(|e| match e {
        CloseError::History(h) => h,
        CloseError::Source(never) => match never {},
    })?;
    Ok(())
}

/// Converts the accruals of the closes recorded under schema version 1 or 2
/// (one SQL row each) into blocks, then drops the tables they were in. Part
/// of the upgrade's transaction.
fn convert_v2(tx: &Transaction, path: &Path) -> Result<(), HistoryError> {
    // One pass in rowid order (version 2 has no index on the close): each
    // close's rows are one run of rowids, appended by its close.
    let mut st = tx
        .prepare(&format!(
            "SELECT {ACCRUAL_COLUMNS}, line_amount, reverses, close_id FROM accruals ORDER BY rowid"
        ))
        .map_err(|e| sql(path, e))?;
    let mut rows = st
        .query_map([], |r| Ok((r.get::<_, i64>(22)?, accrual_rec(r)?)))
        .map_err(|e| sql(path, e))?;
    let mut next = rows.next();
    let mut done = std::collections::BTreeSet::new();
    while let Some(first) = next.take() {
        let (id, first) = first.map_err(|e| sql(path, e))?;
        if !done.insert(id) {
            return Err(HistoryError::Refused {
                path: path.display().to_string(),
                message: format!(
                    "the accruals of close {id} are not one run of rows: the history is damaged; it was not upgraded"
                ),
            });
        }
        // This close's rows: the first, then the next ones of the same
        // close; the first row of the next close waits in `next`.
        let rest = std::iter::from_fn(|| match rows.next() {
            Some(Ok((c, a))) if c == id => Some(Ok(a)),
            Some(Ok(other)) => {
                next = Some(Ok(other));
                None
            }
            Some(Err(e)) => Some(Err(e)),
            None => None,
        });
        // Version 2 kept a run's source keys on its head row only.
        let mut head: Option<AccrualRec> = None;
        let group = std::iter::once(Ok(first)).chain(rest).map(|r| {
            r.map(|mut a| {
                match &head {
                    Some(h) if h.source_line == a.source_line && h.source_file == a.source_file => {
                        if a.reference_id.is_none() && a.product_id.is_none() {
                            a.reference_id.clone_from(&h.reference_id);
                            a.product_id.clone_from(&h.product_id);
                            a.sku_id.clone_from(&h.sku_id);
                            a.charge_start.clone_from(&h.charge_start);
                            a.charge_end.clone_from(&h.charge_end);
                        }
                    }
                    _ => head = Some(a.clone()),
                }
                a
            })
        });
        store_parts(tx, id, encode(group)).map_err(|e| match e {
            CloseError::History(h) => h,
            CloseError::Source(e) => sql(path, e),
        })?;
    }
    drop(rows);
    drop(st);
    tx.execute_batch(
        "DROP TABLE accruals; DROP TABLE charge_references; DROP TABLE charge_subscriptions;",
    )
    .map_err(|e| sql(path, e))
}

/// A blank file is taken only if SQLite sees no table in it (checked
/// read-only, before any write).
/// The accruals `close_charges` found, one run of a billing line's
/// accruals after another (head first), as charges with their dates.
fn cached_charges(all: Vec<ClosedAccrual>) -> Vec<CachedCharge> {
    let date = |s: &Option<String>| {
        s.as_deref()
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let mut out: Vec<CachedCharge> = Vec::new();
    for a in all {
        let same = out.last().is_some_and(|c| {
            let head = &c.accruals[0].accrual;
            head.source_file == a.accrual.source_file && head.source_line == a.accrual.source_line
        });
        if same {
            if let Some(c) = out.last_mut() {
                c.accruals.push(a);
            }
            continue;
        }
        let dates = date(&a.accrual.charge_start)
            .map(|start| (start, date(&a.accrual.charge_end).unwrap_or(start)));
        out.push(CachedCharge {
            dates,
            accruals: vec![a],
        });
    }
    out
}

/// `file:PATH?immutable=1`, the path absolute and percent-encoded.
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file:");
    for &b in abs.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// `wait` as SQLite's busy timeout takes it: at most `i32::MAX` milliseconds
/// (~24.8 days; longer is as good as forever, and more is refused).
fn sqlite_wait(wait: Duration) -> Duration {
    wait.min(Duration::from_millis(i32::MAX as u64))
}

/// Rolls back what a writer killed in rollback-journal mode left (a "hot"
/// `PATH-journal`: a history created or upgraded by an older porledger, or
/// one that switched to WAL only after its first transaction): a read-only
/// connection cannot, and would fail every read with "attempt to write a
/// readonly database". SQLite rolls it back on the first read of a
/// connection that may write; without write access the read-only open
/// below reports the file as it is.
fn roll_back_hot_journal(path: &Path) {
    let mut journal = path.as_os_str().to_owned();
    journal.push("-journal");
    if !std::fs::metadata(&journal).is_ok_and(|m| m.is_file() && m.len() > 0) {
        return;
    }
    if let Ok(conn) = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        let _ = conn.busy_timeout(READ_WAIT);
        let _ = conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()));
    }
}

fn blank_is_empty(path: &Path, wait: Duration) -> Result<(), HistoryError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sql(path, e))?;
    conn.busy_timeout(sqlite_wait(wait))
        .map_err(|e| sql(path, e))?;
    // Another close may have created the history since the probe read the
    // blank header: then it is ours (the migration sees it is current).
    let app: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| busy_or(path, wait, e))?;
    if app == APPLICATION_ID {
        return Ok(());
    }
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| busy_or(path, wait, e))?;
    if tables != 0 {
        return Err(HistoryError::Foreign {
            path: path.display().to_string(),
            why: "an SQLite database of another application".into(),
        });
    }
    Ok(())
}

/// An SQLite error as one sentence: SQLite's message without the statement
/// it failed in, which rusqlite appends in full (the whole schema, for an
/// error while creating or upgrading a history).
fn sqlite_message(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqlInputError { msg, .. } => msg.clone(),
        e => e.to_string(),
    }
}

fn sql(path: &Path, e: rusqlite::Error) -> HistoryError {
    HistoryError::Sqlite {
        path: path.display().to_string(),
        source: e,
    }
}

/// A lock held by another process becomes [`HistoryError::Busy`].
fn busy_or(path: &Path, wait: Duration, e: rusqlite::Error) -> HistoryError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy) | Some(rusqlite::ErrorCode::DatabaseLocked) => {
            HistoryError::Busy {
                path: path.display().to_string(),
                waited_s: wait.as_secs(),
            }
        }
        _ => sql(path, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// The read of a history in a directory that cannot be written (as
    /// immutable, through a `file:` URI): any path, spaces, `%`, `?` and `#`
    /// included.
    #[test]
    fn a_history_is_read_as_immutable_through_any_path() {
        let d = tmp();
        let dir = d.path().join("archive 100% ?#x");
        std::fs::create_dir(&dir).unwrap();
        let p = dir.join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        h.close(&record("2026-10", None), no_rows(), || {}).unwrap();
        drop(h);
        let h = History::open_read_as(&p, SCHEMA_VERSION, true).unwrap();
        assert_eq!(h.issued_as("ab").unwrap(), Some(("2026-10".into(), 1)));
        assert!(immutable_uri(&p).ends_with("/archive%20100%25%20%3F%23x/h.db?immutable=1"));
    }

    /// A file with porledger's application id and a schema version no
    /// porledger writes (negative) is refused by readers and by close,
    /// unchanged (it was an index out of bounds in the upgrade).
    #[test]
    fn a_negative_schema_version_is_refused_not_upgraded() {
        let d = tmp();
        let p = d.path().join("h.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch("CREATE TABLE t(x)").unwrap();
        c.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        c.pragma_update(None, "user_version", -1).unwrap();
        drop(c);
        let before = std::fs::read(&p).unwrap();
        for e in [
            History::open_read(&p).err().unwrap(),
            History::open_write(&p, Duration::from_secs(1))
                .err()
                .unwrap(),
        ] {
            assert!(matches!(e, HistoryError::Foreign { .. }), "{e}");
            assert!(e.to_string().contains("schema version -1"), "{e}");
        }
        assert_eq!(std::fs::read(&p).unwrap(), before);
    }

    /// A file with porledger's application id, schema version 0 and a table
    /// of porledger's schema already there: close fails naming SQLite's
    /// reason in one line, not the 50-line schema it was creating.
    #[test]
    fn an_error_while_creating_the_schema_is_named_without_its_sql() {
        let d = tmp();
        let p = d.path().join("h.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch("CREATE TABLE migrations(x)").unwrap();
        c.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        drop(c);
        let e = History::open_write(&p, Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("table migrations already exists"), "{e}");
        assert!(!e.contains("CREATE") && !e.contains('\n'), "{e}");
    }

    /// A writer killed inside a transaction in rollback-journal mode leaves
    /// a hot `-journal` (here: the file and its journal copied while a
    /// transaction that spilled pages into the file is open). A reader rolls
    /// it back and reads the history as committed, instead of failing every
    /// read ("attempt to write a readonly database").
    #[test]
    fn a_reader_rolls_back_what_a_killed_writer_left() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        h.close(&record("2026-10", None), no_rows(), || {}).unwrap();
        drop(h);
        let c = Connection::open(&p).unwrap();
        c.pragma_update(None, "journal_mode", "DELETE").unwrap();
        c.pragma_update(None, "cache_size", 1).unwrap();
        c.execute_batch("BEGIN; CREATE TABLE spill(x BLOB);")
            .unwrap();
        for _ in 0..200 {
            c.execute("INSERT INTO spill VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        let killed = d.path().join("killed");
        std::fs::create_dir(&killed).unwrap();
        let q = killed.join("h.db");
        std::fs::copy(&p, &q).unwrap();
        std::fs::copy(d.path().join("h.db-journal"), killed.join("h.db-journal")).unwrap();
        drop(c);
        {
            let ro = Connection::open_with_flags(&q, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            let hot = ro.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                r.get::<_, i64>(0)
            });
            assert!(hot.is_err(), "the copy holds no hot journal: {hot:?}");
        }
        let h = History::open_read(&q).unwrap().unwrap();
        assert_eq!(h.issued_as("ab").unwrap(), Some(("2026-10".into(), 1)));
        let tables: i64 = h
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'spill'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "the killed transaction is rolled back");
    }

    /// Closes 2026-11 into the older history at `p` (the close upgrades it),
    /// checks it is now of this build's schema, and opens it to read.
    fn upgraded_by_a_close(p: &Path) -> History {
        let mut h = History::open_write(p, Duration::from_secs(1)).unwrap();
        h.close(&read(&h, "2026-11"), no_rows(), || {}).unwrap();
        drop(h);
        assert_eq!(
            probe(p).unwrap(),
            Probe::Ours {
                version: SCHEMA_VERSION
            }
        );
        History::open_read(p).unwrap().unwrap()
    }

    /// A close of `period` by a run that read `h` as it is now.
    fn read(h: &History, period: &str) -> CloseRecord {
        record(period, Some(h.run_history(period).unwrap()))
    }

    fn record(period: &str, run: Option<RunHistory>) -> CloseRecord {
        CloseRecord {
            period: period.into(),
            manifest_sha256: "ab".into(),
            tool_version: "0".into(),
            rounding: "half-even".into(),
            run,
            lines: vec![LineRec {
                partner_id: "P1".into(),
                partner_name: "One".into(),
                customer_id: "C1".into(),
                customer_name: "Cust".into(),
                program_id: "prog".into(),
                accrual_month: "2026-10".into(),
                currency: "USD".into(),
                lines: 1,
                basis: "100.00".into(),
                amount: "5.00".into(),
            }],
            totals: vec![TotalRec {
                partner_id: "P1".into(),
                partner_name: "One".into(),
                currency: "USD".into(),
                amount: "5.00".into(),
            }],
            usage: vec![UsageMark {
                customer_id: "C1".into(),
                workload: "Teams".into(),
                month: "2026-10".into(),
                mau: "40".into(),
            }],
            ..CloseRecord::default()
        }
    }

    fn no_rows() -> Vec<Result<AccrualRec, ()>> {
        Vec::new()
    }

    #[test]
    fn a_restatement_replaces_the_usage_marks_of_the_version_it_restates() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let mark = |customer: &str, month: &str, mau: &str| UsageMark {
            customer_id: customer.into(),
            workload: "Teams".into(),
            month: month.into(),
            mau: mau.into(),
        };
        let sep = CloseRecord {
            usage: vec![mark("C9", "2026-09", "70")],
            ..record("2026-09", None)
        };
        h.close(&sep, no_rows(), || {}).unwrap();
        let oct = CloseRecord {
            usage: vec![mark("C1", "2026-10", "40"), mark("C2", "2026-10", "90")],
            ..read(&h, "2026-10")
        };
        h.close(&oct, no_rows(), || {}).unwrap();
        // Version 2 of October no longer has C2's row (it was C1's tenant's).
        let restated = RunHistory {
            file: None,
            ..h.run_history("2026-10").unwrap()
        };
        let oct2 = CloseRecord {
            manifest_sha256: "cd".into(),
            usage: vec![mark("C1", "2026-10", "45")],
            ..record("2026-10", Some(restated))
        };
        assert_eq!(h.close(&oct2, no_rows(), || {}).unwrap(), 2);
        let marks: Vec<(String, String, String)> = h
            .usage_marks()
            .unwrap()
            .into_iter()
            .map(|m| (m.customer_id, m.month, m.mau))
            .collect();
        let want = [("C1", "2026-10", "45"), ("C9", "2026-09", "70")];
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        assert_eq!(marks, want);
    }

    #[test]
    fn created_closed_and_read_back() {
        let d = tmp();
        let p = d.path().join("h.db");
        assert_eq!(probe(&p).unwrap(), Probe::Missing);
        assert!(History::open_read(&p).unwrap().is_none());
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let rows = vec![Ok::<_, ()>(AccrualRec {
            partner_id: "P1".into(),
            source_line: 2,
            ..AccrualRec::default()
        })];
        assert_eq!(h.close(&record("2026-10", None), rows, || {}).unwrap(), 1);
        drop(h);
        assert_eq!(
            probe(&p).unwrap(),
            Probe::Ours {
                version: SCHEMA_VERSION
            }
        );
        let h = History::open_read(&p).unwrap().unwrap();
        let c = h.closes(None).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].version, c[0].accruals, c[0].partners), (1, 1, 1));
        assert_eq!(h.lines("2026-10", 1, Some("P1")).unwrap().len(), 1);
        assert_eq!(h.accruals("2026-10", 1, "P1").unwrap().len(), 1);
        assert_eq!(h.usage_marks().unwrap()[0].mau, "40");
    }

    #[test]
    fn double_close_is_refused_restatement_is_the_next_version() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        h.close(&record("2026-10", None), no_rows(), || {}).unwrap();
        let e = h
            .close(&record("2026-10", None), no_rows(), || {})
            .unwrap_err();
        match e {
            CloseError::History(e) => assert!(e.to_string().contains("already closed (version 1)")),
            CloseError::Source(()) => panic!(),
        }
        let restating_1 = h.run_history("2026-10").unwrap();
        assert_eq!(restating_1.restates, Some(1));
        assert_eq!(
            h.close(
                &record("2026-10", Some(restating_1.clone())),
                no_rows(),
                || {}
            )
            .unwrap(),
            2
        );
        assert!(h
            .close(&record("2026-10", Some(restating_1)), no_rows(), || {})
            .is_err());
        let not_held = RunHistory {
            restates: Some(1),
            ..h.run_history("2026-11").unwrap()
        };
        assert!(h
            .close(&record("2026-11", Some(not_held)), no_rows(), || {})
            .is_err());
        assert_eq!(h.latest("2026-10").unwrap(), Some(2));
    }

    /// What a run records of a history holding `recorded`.
    fn run_history_of(recorded: &[Recorded]) -> RunHistory {
        let seen = seen_of(recorded);
        RunHistory {
            closes: Some(seen.closes),
            closes_sha256: Some(seen.sha256),
            ..RunHistory::default()
        }
    }

    fn recorded_of(closes: &[(&str, u32)]) -> Vec<Recorded> {
        closes
            .iter()
            .map(|&(period, version)| Recorded {
                period: period.into(),
                version,
                manifest_sha256: format!("{period} v{version}"),
            })
            .collect()
    }

    #[test]
    fn a_period_overlapping_a_closed_one_is_found_by_month_not_label() {
        let p = Path::new("h.db");
        let closed = recorded_of(&[("2026-10", 1), ("2026-10", 2)]);
        for period in [
            "2026-09..2026-10", // overlaps at its end
            "2026-10..2026-11", // at its start
            "2026-08..2026-12", // contains it
        ] {
            assert_eq!(
                overlapping(p, &closed, period).unwrap(),
                Some(("2026-10", 2)),
                "{period}"
            );
            let e = next_version(p, &closed, &record(period, None))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!(
                    "period {period} shares months with the closed period 2026-10 (version 2)"
                )) && e.contains("run it again as --period 2026-10 with --history"),
                "{e}"
            );
        }
        // The same label is the period itself: closed, or restated.
        assert_eq!(overlapping(p, &closed, "2026-10").unwrap(), None);
        let restating = RunHistory {
            restates: Some(2),
            restates_manifest_sha256: Some("2026-10 v2".into()),
            ..run_history_of(&closed)
        };
        assert_eq!(
            next_version(p, &closed, &record("2026-10", Some(restating))).unwrap(),
            3
        );
        // Adjacent periods share no month.
        for period in ["2026-09", "2026-11", "2026-01..2026-09", "2026-11..2027-10"] {
            assert_eq!(overlapping(p, &closed, period).unwrap(), None, "{period}");
            let run = Some(run_history_of(&closed));
            assert_eq!(next_version(p, &closed, &record(period, run)).unwrap(), 1);
        }
        // Inside a closed range; the first overlapping period by label.
        let closed = recorded_of(&[("2026-11", 1), ("2025-11..2026-10", 1), ("2026-10", 3)]);
        assert_eq!(
            overlapping(p, &closed, "2026-03").unwrap(),
            Some(("2025-11..2026-10", 1))
        );
        assert_eq!(
            overlapping(p, &closed, "2026-10..2026-11").unwrap(),
            Some(("2025-11..2026-10", 1))
        );
        assert_eq!(overlapping(p, &closed, "2026-12").unwrap(), None);
        // A label that is not a period: the one asked about, or a damaged one.
        assert!(overlapping(p, &closed, "2026-13").is_err());
        let damaged = recorded_of(&[("October", 1)]);
        let e = overlapping(p, &damaged, "2026-10").unwrap_err().to_string();
        assert!(
            e.contains("'October' cannot be read") && e.contains("damaged"),
            "{e}"
        );
    }

    /// Two closes create one history at once: the one whose probe saw the
    /// file blank finds it is porledger's by the time it looks inside.
    #[test]
    fn a_history_created_meanwhile_by_another_close_is_ours() {
        let d = tmp();
        let p = d.path().join("h.db");
        std::fs::write(&p, "").unwrap();
        assert_eq!(probe(&p).unwrap(), Probe::Blank);
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        h.close(&record("2026-10", None), no_rows(), || {}).unwrap();
        drop(h);
        blank_is_empty(&p, Duration::from_secs(1)).unwrap();
        // Another application's database is still refused.
        let other = d.path().join("other.db");
        let c = Connection::open(&other).unwrap();
        c.execute_batch("CREATE TABLE t(x)").unwrap();
        drop(c);
        let e = blank_is_empty(&other, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("another application"), "{e}");
    }

    #[test]
    fn a_run_without_history_is_not_closed_after_an_earlier_period() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        // The first close of a history, as before.
        h.close(&record("2026-10", None), no_rows(), || {}).unwrap();
        // A later period's run that read no history never reversed October's
        // charges nor measured growth from October's marks.
        for period in ["2026-11", "2026-11..2026-12"] {
            let e = refusal(
                h.close(&record(period, None), no_rows(), || {})
                    .unwrap_err(),
            );
            assert!(
                e.contains("period 2026-10 (version 1) is closed")
                    && e.contains("the run in --out was made without --history")
                    && e.contains(&format!("--history {}", p.display())),
                "{e}"
            );
            assert!(check_close(&p, Some(&h), &record(period, None)).is_err());
        }
        assert_eq!(h.closes(None).unwrap().len(), 1);
        // An earlier period depends on nothing closed.
        assert_eq!(
            h.close(&record("2026-09", None), no_rows(), || {}).unwrap(),
            1
        );
        // A run that read the history is closed.
        assert_eq!(h.close(&read(&h, "2026-11"), no_rows(), || {}).unwrap(), 1);
    }

    #[test]
    fn an_overlapping_close_is_refused_and_records_nothing() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        h.close(&record("2026-10", None), no_rows(), || {}).unwrap();
        h.close(&read(&h, "2026-11"), no_rows(), || {}).unwrap();
        for period in ["2026-09..2026-10", "2026-10..2026-11", "2026-11..2026-12"] {
            let e = h.close(&read(&h, period), no_rows(), || {}).unwrap_err();
            match e {
                CloseError::History(e) => {
                    assert!(e.to_string().contains("shares months"), "{e}")
                }
                CloseError::Source(()) => panic!(),
            }
            assert!(h.refuse_overlap(period).is_err());
            assert!(check_close(&p, Some(&h), &read(&h, period)).is_err());
        }
        assert!(h.refuse_overlap("2026-10").is_ok());
        assert_eq!(h.closes(None).unwrap().len(), 2);
        assert_eq!(h.close(&read(&h, "2026-12"), no_rows(), || {}).unwrap(), 1);
    }

    /// A close of `period` whose run's manifest has the SHA-256 `manifest`.
    fn issued(period: &str, manifest: &str, run: Option<RunHistory>) -> CloseRecord {
        CloseRecord {
            manifest_sha256: manifest.into(),
            ..record(period, run)
        }
    }

    fn refusal(e: CloseError<()>) -> String {
        match e {
            CloseError::History(e) => e.to_string(),
            CloseError::Source(()) => panic!("not a refusal"),
        }
    }

    #[test]
    fn a_run_is_closed_only_into_the_history_it_was_computed_against() {
        let d = tmp();
        let (p1, p2) = (d.path().join("h1.db"), d.path().join("h2.db"));
        let wait = Duration::from_secs(1);
        let mut h1 = History::open_write(&p1, wait).unwrap();
        let mut h2 = History::open_write(&p2, wait).unwrap();
        h1.close(&issued("2026-10", "a1", None), no_rows(), || {})
            .unwrap();
        h2.close(&issued("2026-10", "b1", None), no_rows(), || {})
            .unwrap();
        // A restatement of h2's version 1 is not one of h1's version 1.
        let of_h2 = RunHistory {
            file: Some("h2.db".into()),
            ..h2.run_history("2026-10").unwrap()
        };
        assert_eq!(of_h2.restates, Some(1));
        assert_eq!(of_h2.restates_manifest_sha256.as_deref(), Some("b1"));
        let e = h1
            .close(
                &issued("2026-10", "c", Some(of_h2.clone())),
                no_rows(),
                || {},
            )
            .unwrap_err();
        let e = refusal(e);
        assert!(
            e.contains(
                "restates version 1 of period 2026-10 as issued in h2.db (manifest sha256 b1)"
            ) && e.contains("(this history's first close is not the one the run read)")
                && e.contains(&format!("--history {}", p1.display())),
            "{e}"
        );
        assert_eq!(h1.latest("2026-10").unwrap(), Some(1));
        // A first close of a period h2 had open, computed against h2, neither.
        let nov = RunHistory {
            file: Some("h2.db".into()),
            ..h2.run_history("2026-11").unwrap()
        };
        assert_eq!(nov.restates, None);
        let e = refusal(
            h1.close(&issued("2026-11", "d", Some(nov.clone())), no_rows(), || {})
                .unwrap_err(),
        );
        assert!(e.contains("was computed against h2.db"), "{e}");
        assert!(check_close(&p1, Some(&h1), &issued("2026-11", "d", Some(nov.clone()))).is_err());
        // A history that holds fewer closes than the run read.
        let dec = h2.run_history("2026-12").unwrap();
        h2.close(&issued("2026-12", "b2", Some(dec)), no_rows(), || {})
            .unwrap();
        let longer = h2.run_history("2027-01").unwrap();
        let e = check_close(
            &p1,
            Some(&h1),
            &issued("2027-01", "e", Some(longer.clone())),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("(it held 2 closes when the run read it, this history holds 1 close)"),
            "{e}"
        );
        let e = check_close(&p1, None, &issued("2027-01", "e", Some(longer)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("this history holds 0 closes"), "{e}");
        // Into the history it read: closes since the run are fine.
        assert_eq!(
            h2.close(&issued("2026-11", "d", Some(nov)), no_rows(), || {})
                .unwrap(),
            1
        );
        assert_eq!(
            h2.close(&issued("2026-10", "c", Some(of_h2)), no_rows(), || {})
                .unwrap(),
            2
        );
        // A run that read a history without closes (or none at all) fits any
        // that holds no earlier period: a closed earlier period may hold the
        // charges its credits reverse, which it did not see.
        let empty = RunHistory::empty();
        assert_eq!(
            check_close(&p1, Some(&h1), &issued("2026-01", "f", Some(empty.clone()))).unwrap(),
            1
        );
        let e = check_close(&p1, Some(&h1), &issued("2027-02", "f", Some(empty.clone())))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("period 2026-10 (version 1) is closed, and it was closed after the run"),
            "{e}"
        );
        assert_eq!(
            check_close(&p1, None, &issued("2027-02", "f", Some(empty))).unwrap(),
            1
        );
    }

    #[test]
    fn a_copy_of_the_history_is_the_same_history_until_they_differ() {
        let d = tmp();
        let (p1, copy) = (d.path().join("h1.db"), d.path().join("copy.db"));
        let wait = Duration::from_secs(1);
        let mut h1 = History::open_write(&p1, wait).unwrap();
        h1.close(&issued("2026-10", "a1", None), no_rows(), || {})
            .unwrap();
        h1.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        std::fs::copy(&p1, &copy).unwrap();
        let mut c = History::open_write(&copy, wait).unwrap();
        assert_eq!(c.seen().unwrap(), h1.seen().unwrap());
        // Computed against the copy, the restatement is of h1's very version 1.
        let of_copy = c.run_history("2026-10").unwrap();
        assert_eq!(
            h1.close(
                &issued("2026-10", "a2", Some(of_copy.clone())),
                no_rows(),
                || {}
            )
            .unwrap(),
            2
        );
        // Once the copy has closes of its own, a run against it is refused.
        c.close(&issued("2026-10", "x2", Some(of_copy)), no_rows(), || {})
            .unwrap();
        let diverged = c.run_history("2026-10").unwrap();
        let e = refusal(
            h1.close(&issued("2026-10", "x3", Some(diverged)), no_rows(), || {})
                .unwrap_err(),
        );
        assert!(
            e.contains("this history's first 2 closes are not the ones the run read"),
            "{e}"
        );
    }

    #[test]
    fn the_restated_version_is_checked_by_its_manifest_and_older_manifests_are_defined() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        h.close(&issued("2026-10", "a1", None), no_rows(), || {})
            .unwrap();
        // The closes the run read are this history's, but the restated
        // manifest is not this history's version 1.
        let other = RunHistory {
            restates_manifest_sha256: Some("b1".into()),
            ..h.run_history("2026-10").unwrap()
        };
        let e = refusal(
            h.close(&issued("2026-10", "c", Some(other)), no_rows(), || {})
                .unwrap_err(),
        );
        assert!(
            e.contains("as issued with manifest sha256 b1, but this history's version 1 has manifest sha256 a1"),
            "{e}"
        );
        // An older porledger's restatement ({"restates": 1}): refused, it
        // could be another history's version 1.
        let old = RunHistory {
            restates: Some(1),
            ..RunHistory::default()
        };
        let e = refusal(
            h.close(&issued("2026-10", "c", Some(old)), no_rows(), || {})
                .unwrap_err(),
        );
        assert!(
            e.contains("does not say which history it was computed against")
                && e.contains("older porledger")
                && e.contains("run the period again with --history"),
            "{e}"
        );
        // An older porledger's run of an open period ({}): a first close, as
        // that porledger recorded it; of a closed period: already closed.
        let e = refusal(
            h.close(
                &issued("2026-10", "c", Some(RunHistory::default())),
                no_rows(),
                || {},
            )
            .unwrap_err(),
        );
        assert!(e.contains("already closed (version 1)"), "{e}");
        assert_eq!(
            h.close(
                &issued("2026-11", "d", Some(RunHistory::default())),
                no_rows(),
                || {}
            )
            .unwrap(),
            1
        );
        assert_eq!(h.closes(None).unwrap().len(), 2);
    }

    #[test]
    fn the_manifest_field_reads_back_and_older_manifests_parse() {
        let rh = RunHistory {
            file: Some("h.db".into()),
            closes: Some(2),
            closes_sha256: Some("ff".into()),
            restates: Some(1),
            restates_manifest_sha256: Some("ab".into()),
        };
        let json = serde_json::to_value(&rh).unwrap();
        assert_eq!(serde_json::from_value::<RunHistory>(json).unwrap(), rh);
        let old: RunHistory = serde_json::from_str(r#"{"restates": 3}"#).unwrap();
        assert_eq!((old.restates, old.closes), (Some(3), None));
        let none: RunHistory = serde_json::from_str("{}").unwrap();
        assert_eq!(none, RunHistory::default());
        assert_eq!(
            RunHistory::empty().closes_sha256.as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn a_failing_source_leaves_nothing() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let rows = vec![Ok(AccrualRec::default()), Err("bad row")];
        assert!(matches!(
            h.close(&record("2026-10", None), rows, || {}),
            Err(CloseError::Source("bad row"))
        ));
        assert_eq!(h.latest("2026-10").unwrap(), None);
        assert!(h.closes(None).unwrap().is_empty());
    }

    #[test]
    fn foreign_files_are_refused_untouched() {
        let d = tmp();
        let junk = d.path().join("junk");
        std::fs::write(&junk, b"hello, this is not a database").unwrap();
        let e = History::open_write(&junk, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(e.to_string().contains("not an SQLite database"), "{e}");
        let other = d.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t(x); PRAGMA application_id = 7;")
            .unwrap();
        let before = std::fs::read(&other).unwrap();
        let e = History::open_write(&other, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(e.to_string().contains("application_id 0x7"), "{e}");
        assert!(History::open_read(&other).is_err());
        assert_eq!(std::fs::read(&other).unwrap(), before);
        let plain = d.path().join("plain.db");
        Connection::open(&plain)
            .unwrap()
            .execute_batch("CREATE TABLE t(x);")
            .unwrap();
        let before = std::fs::read(&plain).unwrap();
        let e = History::open_write(&plain, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(e.to_string().contains("another application"), "{e}");
        assert_eq!(std::fs::read(&plain).unwrap(), before);
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let d = tmp();
        let p = d.path().join("h.db");
        History::open_write(&p, Duration::from_secs(1)).unwrap();
        Connection::open(&p)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let before = std::fs::read(&p).unwrap();
        let e = History::open_write(&p, Duration::from_secs(1))
            .err()
            .unwrap();
        assert!(matches!(e, HistoryError::Newer { .. }), "{e}");
        assert!(History::open_read(&p).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), before);
    }

    fn charge(partner: &str, reference: Option<&str>, sku: Option<&str>, line: u64) -> AccrualRec {
        AccrualRec {
            partner_id: partner.into(),
            customer_id: "c1".into(),
            program_id: "prog".into(),
            subscription_id: "sub-1".into(),
            source_file: "oct.csv".into(),
            source_line: line,
            reference_id: reference.map(Into::into),
            product_id: Some("CFQ7".into()),
            sku_id: sku.map(Into::into),
            charge_start: Some("2026-10-01".into()),
            charge_end: Some("2026-10-31".into()),
            basis: "100.00".into(),
            rate: "0.05".into(),
            share: "1".into(),
            amount: "5.0000".into(),
            currency: "USD".into(),
            line_amount: Some("100.00".into()),
            ..AccrualRec::default()
        }
    }

    fn key(reference: &str, sku: Option<&str>) -> reverse::ChargeKey {
        let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        reverse::ChargeKey {
            customer_id: "c1".into(),
            reference_id: reference.into(),
            subscription_id: "sub-1".into(),
            product_id: "CFQ7".into(),
            sku_id: sku.map(Into::into),
            charge_start: day("2026-10-10"),
            charge_end: day("2026-11-09"),
            scope: reverse::Scope::Whole,
        }
    }

    /// [`key`] without a reference ID, for `product` and `sku`.
    fn product_key(product: &str, sku: Option<&str>) -> reverse::ChargeKey {
        reverse::ChargeKey {
            product_id: product.into(),
            ..key("", sku)
        }
    }

    #[test]
    fn closed_charges_come_from_the_latest_version_of_each_period() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let v1 = vec![
            Ok::<_, ()>(charge("P1", Some("REF-1"), Some("0001"), 2)),
            Ok(charge("P1", None, Some("0001"), 3)),
        ];
        h.close(&record("2026-10", None), v1, || {}).unwrap();
        let by_ref = h.closed_charges(&key("REF-1", None)).unwrap();
        assert_eq!(by_ref.len(), 1);
        assert_eq!(
            (by_ref[0].period.as_str(), by_ref[0].version),
            ("2026-10", 1)
        );
        assert_eq!(by_ref[0].accrual.line_amount.as_deref(), Some("100.00"));
        let by_keys = h.closed_charges(&key("", Some("0001"))).unwrap();
        assert_eq!(
            by_keys.len(),
            2,
            "both lines have the subscription, product and SKU"
        );
        assert!(h.closed_charges(&key("", None)).unwrap().is_empty());
        assert!(h
            .closed_charges(&key("REF-2", Some("0001")))
            .unwrap()
            .is_empty());
        // A restatement moves the charge to P2: only version 2 is looked at.
        let v2 = vec![Ok::<_, ()>(charge("P2", Some("REF-1"), Some("0001"), 2))];
        let restating = h.run_history("2026-10").unwrap();
        h.close(&record("2026-10", Some(restating)), v2, || {})
            .unwrap();
        let by_ref = h.closed_charges(&key("REF-1", None)).unwrap();
        assert_eq!(by_ref.len(), 1);
        assert_eq!(
            (by_ref[0].version, by_ref[0].accrual.partner_id.as_str()),
            (2, "P2")
        );
    }

    /// A billing line with several accruals (two partners, two months) is
    /// recorded as one run: its keys once, on the head; a look-up returns
    /// the whole run with the keys on every row, in recorded order.
    #[test]
    fn a_charge_is_recorded_once_and_found_whole() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let mut a = charge("P1", Some("REF-1"), Some("0001"), 2);
        let mut b = charge("P2", Some("REF-1"), Some("0001"), 2);
        let mut c = charge("P1", Some("REF-1"), Some("0001"), 2);
        a.accrual_month = "2026-10".into();
        b.accrual_month = "2026-10".into();
        c.accrual_month = "2026-11".into();
        let other = charge("P1", Some("REF-2"), Some("0001"), 3);
        let rows = vec![Ok::<_, ()>(a), Ok(b), Ok(c), Ok(other)];
        h.close(&record("2026-10", None), rows, || {}).unwrap();
        let db = Connection::open(&p).unwrap();
        let blocks: Vec<(i64, i64)> = db
            .prepare("SELECT first, rows FROM accrual_blocks ORDER BY close_id, first")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(blocks, vec![(0, 4)]);
        // The key blocks hold the heads only, by key: (key, ordinal).
        let entries = |kind: i64| -> Vec<(String, String)> {
            let (n, data): (i64, Vec<u8>) = db
                .query_row(
                    "SELECT entries, data FROM charge_keys WHERE kind = ?1",
                    [kind],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
            let b = block::Block::decode(&data, 2, n as usize).unwrap();
            (0..b.rows())
                .map(|i| {
                    let t = |c| String::from_utf8_lossy(b.bytes(i, c).unwrap()).into_owned();
                    (t(0), t(1))
                })
                .collect()
        };
        let pair = |k: &str, at: &str| (k.to_string(), at.to_string());
        // Reference IDs by their ID key (the rows keep them as written).
        assert_eq!(entries(0), vec![pair("ref-1", "0"), pair("ref-2", "3")]);
        // Product and SKU by their ID key too (the rows keep them as
        // written).
        let sub = "sub-1\u{fffd}cfq7\u{fffd}0001";
        assert_eq!(entries(1), vec![pair(sub, "0"), pair(sub, "3")]);
        let found = h.closed_charges(&key("REF-1", None)).unwrap();
        let got: Vec<(&str, &str, Option<&str>)> = found
            .iter()
            .map(|c| {
                (
                    c.accrual.partner_id.as_str(),
                    c.accrual.accrual_month.as_str(),
                    c.accrual.reference_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("P1", "2026-10", Some("REF-1")),
                ("P2", "2026-10", Some("REF-1")),
                ("P1", "2026-11", Some("REF-1")),
            ]
        );
        assert!(found.iter().all(|c| c.accrual.charge_start.is_some()));
        assert_eq!(h.closed_charges(&key("", Some("0001"))).unwrap().len(), 4);
        assert!(h.closed_charges(&key("REF-9", None)).unwrap().is_empty());
        assert!(h.closed_charges(&key("", Some("0002"))).unwrap().is_empty());
        // The close's key filters hold its keys; without them (a close whose
        // filter row is missing) the key tables alone still find the charges.
        let f: i64 = db
            .query_row("SELECT count(*) FROM charge_filters", [], |r| r.get(0))
            .unwrap();
        assert_eq!(f, 1);
        drop(h);
        db.execute("DELETE FROM charge_filters", []).unwrap();
        let h = History::open_read(&p).unwrap().unwrap();
        assert_eq!(h.closed_charges(&key("REF-1", None)).unwrap().len(), 3);
        assert_eq!(h.closed_charges(&key("", Some("0001"))).unwrap().len(), 4);
    }

    /// A schema version 1 file, as porledger 0.x wrote it.
    fn v1_file(p: &Path) {
        let c = Connection::open(p).unwrap();
        c.execute_batch(SCHEMA_V1).unwrap();
        c.execute(
            "INSERT INTO migrations(version, description) VALUES (1, 'porledger history v1')",
            [],
        )
        .unwrap();
        c.execute_batch(
            "INSERT INTO closes(period, version, manifest_sha256, tool_version, rounding, accruals, partners)
               VALUES ('2026-09', 1, 'ab', '0', 'half-even', 1, 1);
             INSERT INTO accruals(close_id, partner_id, customer_id, program_id, association, subscription_id,
               charge_date, accrual_month, source_file, source_line, basis, rate, share, amount, currency)
               VALUES (1, 'P1', 'c1', 'prog', 'dpor', 'sub-1', '2026-09-01', '2026-09', 'sep.csv', 2,
               '10', '0.05', '1', '0.50', 'USD');",
        )
        .unwrap();
        c.pragma_update(None, "application_id", APPLICATION_ID)
            .unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
    }

    #[test]
    fn a_version_1_file_is_read_as_it_is_and_upgraded_by_the_next_close() {
        let d = tmp();
        let p = d.path().join("h.db");
        v1_file(&p);
        assert_eq!(probe(&p).unwrap(), Probe::Ours { version: 1 });
        let before = std::fs::read(&p).unwrap();
        {
            let h = History::open_read(&p).unwrap().unwrap();
            let a = h.accruals("2026-09", 1, "P1").unwrap();
            assert_eq!((a.len(), a[0].line_amount.as_ref()), (1, None));
            assert!(h.closed_charges(&key("", None)).unwrap().is_empty());
        }
        assert_eq!(
            std::fs::read(&p).unwrap(),
            before,
            "a reader never upgrades"
        );
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let rows = vec![Ok::<_, ()>(charge("P1", Some("REF-1"), None, 2))];
        h.close(&read(&h, "2026-10"), rows, || {}).unwrap();
        drop(h);
        assert_eq!(
            probe(&p).unwrap(),
            Probe::Ours {
                version: SCHEMA_VERSION
            }
        );
        let h = History::open_read(&p).unwrap().unwrap();
        // The version 1 rows are kept, without the new columns.
        let old = h.accruals("2026-09", 1, "P1").unwrap();
        assert_eq!(
            (old[0].amount.as_str(), old[0].line_amount.as_ref()),
            ("0.50", None)
        );
        assert_eq!(h.closed_charges(&key("REF-1", None)).unwrap().len(), 1);
        let n: i64 = h
            .conn
            .query_row("SELECT count(*) FROM migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, i64::from(SCHEMA_VERSION));
    }

    /// A schema version 2 file: one row per accrual, a run's keys on its
    /// head only, the key tables pointing at rowids.
    fn v2_file(p: &Path) {
        v1_file(p);
        let c = Connection::open(p).unwrap();
        c.execute_batch(SCHEMA_V2).unwrap();
        c.execute_batch(
            "INSERT INTO migrations(version, description) VALUES (2, 'v2');
             INSERT INTO closes(period, version, manifest_sha256, tool_version, rounding, accruals, partners)
               VALUES ('2026-10', 1, 'cd', '0', 'half-even', 3, 2);
             INSERT INTO accruals(close_id, partner_id, customer_id, program_id, association, subscription_id,
               charge_date, accrual_month, source_file, source_line, reference_id, product_id, sku_id,
               charge_start, charge_end, basis, rate, share, amount, currency, line_amount, charge_rows)
               VALUES (2, 'P1', 'c1', 'prog', 'dpor', 'sub-1', '2026-10-01', '2026-10', 'oct.csv', 2,
               'REF-1', 'CFQ7', '0001', '2026-10-01', '2026-10-31', '100.00', '0.05', '1', '5.00', 'USD',
               '100.00', 2);
             INSERT INTO accruals(close_id, partner_id, customer_id, program_id, association, subscription_id,
               charge_date, accrual_month, source_file, source_line, basis, rate, share, amount, currency,
               line_amount)
               VALUES (2, 'P2', 'c1', 'prog', 'cpor', 'sub-1', '2026-10-01', '2026-10', 'oct.csv', 2,
               '100.00', '0.02', '1', '2.00', 'USD', '100.00');
             INSERT INTO accruals(close_id, partner_id, customer_id, program_id, association, subscription_id,
               charge_date, accrual_month, source_file, source_line, basis, rate, share, amount, currency,
               line_amount, reverses)
               VALUES (2, 'P1', 'c9', 'prog', 'dpor', 'sub-9', '2026-10-02', '2026-10', 'oct.csv', 3,
               '-10.00', '0.05', '1', '-0.50', 'USD', '-10.00', '2026-09 v1 sep.csv:2');
             INSERT INTO charge_references VALUES (2, 'REF-1', 2);
             INSERT INTO charge_subscriptions VALUES (2, 'sub-1', 'CFQ7', '0001', 2);",
        )
        .unwrap();
        c.pragma_update(None, "user_version", 2).unwrap();
    }

    #[test]
    fn a_version_2_file_is_read_as_it_is_and_converted_by_the_next_close() {
        let d = tmp();
        let p = d.path().join("h.db");
        v2_file(&p);
        assert_eq!(probe(&p).unwrap(), Probe::Ours { version: 2 });
        let before = std::fs::read(&p).unwrap();
        let look = |h: &History| {
            let found = h.closed_charges(&key("REF-1", None)).unwrap();
            let by_keys = h.closed_charges(&key("", Some("0001"))).unwrap();
            assert_eq!(found, by_keys);
            // The product in another letter case: version 2 stored it as
            // written (CFQ7), its reader tries the credit's in upper case.
            let spelled = h.closed_charges(&product_key("cfq7", Some("0001")));
            assert_eq!(spelled.unwrap(), by_keys);
            let sep = ClosedAccrual {
                period: "2026-09".into(),
                version: 1,
                accrual: AccrualRec {
                    source_file: "sep.csv".into(),
                    source_line: 2,
                    ..AccrualRec::default()
                },
            };
            let credited = h.credited(&sep, None).unwrap();
            let mut issued = Vec::new();
            h.issued_accruals(&[("2026-10".to_string(), 1)], ("2026-10", "2026-10"), |r| {
                issued.push((r.partner_id.to_string(), r.amount.to_string()));
                Ok::<(), HistoryError>(())
            })
            .unwrap();
            let explained = h.accruals("2026-10", 1, "P1").unwrap();
            (found, credited, issued, explained)
        };
        let (found, credited, issued, explained, restating) = {
            let h = History::open_read(&p).unwrap().unwrap();
            // A restatement computed against the version 2 file, and what
            // close decides about it before upgrading.
            let restating = h.run_history("2026-10").unwrap();
            assert_eq!(restating.restates, Some(1));
            let rec = record("2026-10", Some(restating.clone()));
            assert_eq!(check_close(&p, Some(&h), &rec).unwrap(), 2);
            assert!(check_close(&p, Some(&h), &record("2026-10..2026-11", None)).is_err());
            let (found, credited, issued, explained) = look(&h);
            (found, credited, issued, explained, restating)
        };
        assert_eq!(
            std::fs::read(&p).unwrap(),
            before,
            "a reader never upgrades"
        );
        assert_eq!(found.len(), 2);
        assert!(found
            .iter()
            .all(|c| c.accrual.reference_id.as_deref() == Some("REF-1")));
        assert_eq!(credited, rust_decimal::Decimal::new(-1000, 2));
        assert_eq!(issued.len(), 3);
        assert_eq!(explained.len(), 2);

        let h = upgraded_by_a_close(&p);
        let after = look(&h);
        assert_eq!(
            after,
            (found, credited, issued, explained),
            "the conversion keeps every row"
        );
        // The converted reference keys are folded: any spelling finds them.
        assert_eq!(reference_keys(&h.conn, 2), vec![("ref-1".into(), 0)]);
        assert_eq!(h.closed_charges(&key("Ref-1", None)).unwrap(), after.0);
        assert_eq!(h.accruals("2026-09", 1, "P1").unwrap().len(), 1);
        let old: i64 = h
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('accruals', 'charge_references', 'charge_subscriptions')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old, 0, "the version 2 tables are gone");
        // The upgrade keeps the closes as they were: the restatement
        // computed against the version 2 file is this history's.
        drop(h);
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let rec = record("2026-10", Some(restating));
        assert_eq!(h.close(&rec, no_rows(), || {}).unwrap(), 2);
    }

    /// The key entries of `kind` of close `id`: (key, ordinal), the parts
    /// of a kind 1 key joined by '|' (for 0xff).
    fn stored_keys(c: &Connection, id: i64, kind: u8) -> Vec<(String, u64)> {
        let mut st = c
            .prepare("SELECT entries, data FROM charge_keys WHERE close_id = ?1 AND kind = ?2 ORDER BY seq")
            .unwrap();
        let mut rows = st.query(params![id, kind]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            let n: i64 = r.get(0).unwrap();
            let data: Vec<u8> = r.get(1).unwrap();
            let b = block::Block::decode(&data, 2, n as usize).unwrap();
            for i in 0..b.rows() {
                let parts: Vec<&str> = b
                    .bytes(i, 0)
                    .unwrap()
                    .split(|x| *x == 0xff)
                    .map(|p| std::str::from_utf8(p).unwrap())
                    .collect();
                out.push((
                    parts.join("|"),
                    b.text(i, 1).unwrap().unwrap().parse().unwrap(),
                ));
            }
        }
        out
    }

    /// The kind 0 (reference) key entries of close `id`: (key, ordinal).
    fn reference_keys(c: &Connection, id: i64) -> Vec<(String, u64)> {
        stored_keys(c, id, 0)
    }

    /// The stored rows of close `id` other than its keys of `kind` and
    /// that kind's filter, their bytes in hex: accrual blocks, the other
    /// kind's key blocks and filter.
    fn other_rows(c: &Connection, id: i64, kind: u8) -> Vec<String> {
        let filter = match kind {
            0 => "SELECT hex(subscriptions_filter) FROM charge_filters WHERE close_id = ?1",
            _ => "SELECT hex(references_filter) FROM charge_filters WHERE close_id = ?1",
        };
        let mut out = Vec::new();
        for q in [
            "SELECT first || ' ' || rows || ' ' || hex(data) FROM accrual_blocks
             WHERE close_id = ?1 ORDER BY first",
            &format!(
                "SELECT seq || ' ' || hex(first_key) || ' ' || entries || ' ' || hex(data) FROM charge_keys
                 WHERE close_id = ?1 AND kind = {} ORDER BY seq",
                1 - kind
            ),
            filter,
        ] {
            let mut st = c.prepare(q).unwrap();
            let rows = st.query_map(params![id], |r| r.get::<_, String>(0)).unwrap();
            out.extend(rows.map(Result::unwrap));
        }
        out
    }

    /// The key blocks of `kind` and that kind's filter of close `id`, with
    /// `keys` (the parts of a kind 1 key joined by '|') as an older schema
    /// stored them (as written); the rest as this build wrote it.
    fn unfold_keys(c: &Connection, id: i64, kind: u8, keys: &[(&str, u64)]) {
        let tx = c.unchecked_transaction().unwrap();
        let mut list: Vec<(Vec<u8>, u64)> = keys
            .iter()
            .map(|(k, at)| {
                let parts: Vec<&str> = k.split('|').collect();
                let k = match kind {
                    0 => k.as_bytes().to_vec(),
                    _ => joined_key(parts[0], parts[1], parts[2]),
                };
                (k, *at)
            })
            .collect();
        replace_keys(&tx, Path::new("test"), id, kind, &mut list).unwrap();
        tx.commit().unwrap();
    }

    /// A schema version 3 file: close 1 (2026-09) with a reference ID in
    /// lower case, close 2 (2026-10) with one in mixed case (line 2, a run
    /// of two accruals) and one in upper case (line 3), their reference
    /// keys as written (their subscription keys as this build folds them,
    /// which the version 5 upgrade leaves as they are: see `v4_file` for
    /// unfolded ones).
    fn v3_file(p: &Path) {
        let mut h = History::open_write(p, Duration::from_secs(1)).unwrap();
        let mut sep = charge("P1", Some("ref-sep"), Some("0001"), 2);
        sep.source_file = "sep.csv".into();
        sep.charge_start = Some("2026-09-01".into());
        sep.charge_end = Some("2026-09-30".into());
        h.close(&record("2026-09", None), vec![Ok::<_, ()>(sep)], || {})
            .unwrap();
        let rows = vec![
            Ok::<_, ()>(charge("P1", Some("Ref-C1-Oct"), Some("0001"), 2)),
            Ok(charge("P2", Some("Ref-C1-Oct"), Some("0001"), 2)),
            Ok(charge("P1", Some("REF-C2-OCT"), Some("0002"), 3)),
        ];
        h.close(&read(&h, "2026-10"), rows, || {}).unwrap();
        drop(h);
        let c = Connection::open(p).unwrap();
        unfold_keys(&c, 2, 0, &[("Ref-C1-Oct", 0), ("REF-C2-OCT", 2)]);
        c.execute("DELETE FROM migrations WHERE version >= 4", [])
            .unwrap();
        c.pragma_update(None, "user_version", 3).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }

    /// A close keeps its reference keys folded: a credit finds its charge
    /// by the `ReferenceId` in any letter case, with blanks around it.
    #[test]
    fn a_reference_id_is_found_in_any_letter_case() {
        use reverse::ClosedCharges;
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let rows = vec![
            Ok::<_, ()>(charge("P1", Some("Ref-C1-Oct"), Some("0001"), 2)),
            Ok(charge("P2", Some("Ref-C1-Oct"), Some("0001"), 2)),
            Ok(charge("P1", Some(" Müller-Ref "), Some("0002"), 3)),
        ];
        h.close(&record("2026-10", None), rows, || {}).unwrap();
        assert_eq!(
            reference_keys(&h.conn, 1),
            vec![("müller-ref".into(), 2), ("ref-c1-oct".into(), 0)]
        );
        drop(h);
        let lookup = ClosedLookup::new(History::open_read(&p).unwrap().unwrap(), None).unwrap();
        for spelled in [
            "Ref-C1-Oct",
            "ref-c1-oct",
            "REF-C1-OCT",
            "rEF-c1-OcT",
            "  ref-C1-OCT\t",
        ] {
            let c = lookup.charge(&key(spelled, None)).unwrap();
            let c = c.unwrap_or_else(|| panic!("{spelled:?} finds no charge"));
            let got: Vec<(&str, Option<&str>)> = c
                .accruals
                .iter()
                .map(|a| {
                    (
                        a.accrual.partner_id.as_str(),
                        a.accrual.reference_id.as_deref(),
                    )
                })
                .collect();
            assert_eq!(
                got,
                vec![("P1", Some("Ref-C1-Oct")), ("P2", Some("Ref-C1-Oct"))],
                "{spelled:?}"
            );
        }
        for spelled in ["MÜLLER-REF", "müller-ref", "mÜller-rEF "] {
            let c = lookup.charge(&key(spelled, None)).unwrap();
            let c = c.unwrap_or_else(|| panic!("{spelled:?} finds no charge"));
            assert_eq!(c.accruals.len(), 1, "{spelled:?}");
            assert_eq!(c.accruals[0].accrual.source_line, 3);
        }
        assert!(lookup.charge(&key("ref-c1-nov", None)).unwrap().is_none());
    }

    /// A close keeps its product and SKU keys folded: a credit without a
    /// `ReferenceId` finds its charge by `ProductId` and `SkuId` in any
    /// letter case (a missing SKU still only by a missing one).
    #[test]
    fn a_product_and_sku_are_found_in_any_letter_case() {
        use reverse::ClosedCharges;
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let mut rows = vec![
            charge("P1", None, Some("Dg7G-Ab"), 2),
            charge("P2", None, Some("Dg7G-Ab"), 2),
            charge("P1", None, None, 3),
        ];
        for a in &mut rows {
            a.product_id = Some("CFQ7TTC0LFLX".into());
        }
        h.close(
            &record("2026-10", None),
            rows.into_iter().map(Ok::<_, ()>),
            || {},
        )
        .unwrap();
        assert_eq!(
            stored_keys(&h.conn, 1, 1),
            vec![
                ("sub-1|cfq7ttc0lflx|".into(), 2),
                ("sub-1|cfq7ttc0lflx|dg7g-ab".into(), 0)
            ]
        );
        drop(h);
        let lookup = ClosedLookup::new(History::open_read(&p).unwrap().unwrap(), None).unwrap();
        let found = |product: &str, sku: Option<&str>| {
            let c = lookup.charge(&product_key(product, sku)).unwrap();
            c.map(|c| {
                c.accruals
                    .iter()
                    .map(|a| (a.accrual.partner_id.clone(), a.accrual.source_line))
                    .collect::<Vec<_>>()
            })
        };
        let line_2 = Some(vec![("P1".to_string(), 2), ("P2".to_string(), 2)]);
        for (product, sku) in [
            ("CFQ7TTC0LFLX", "Dg7G-Ab"),
            ("cfq7ttc0lflx", "dg7g-ab"),
            ("Cfq7TtC0lFlX", "DG7G-AB"),
            (" cfq7ttc0lflx ", "dG7g-aB "),
        ] {
            assert_eq!(found(product, Some(sku)), line_2, "{product:?} {sku:?}");
        }
        for product in ["CFQ7TTC0LFLX", "cfq7ttc0lflx", "cFQ7ttc0LFLX"] {
            let line_3 = Some(vec![("P1".to_string(), 3)]);
            assert_eq!(found(product, None), line_3, "{product:?}");
        }
        assert_eq!(found("cfq7ttc0lfly", Some("dg7g-ab")), None);
        // A SKU closed for none of the product's charges: only the charge
        // recorded without a SKU may be it (its file may have had none).
        assert_eq!(
            found("cfq7ttc0lflx", Some("dg7g-ac")),
            Some(vec![("P1".to_string(), 3)])
        );
    }

    /// A schema version 4 file: close 1 (2026-09) with its product and SKU
    /// in lower case, close 2 (2026-10) with a mixed-case SKU (line 2, a
    /// run of two accruals, reference `Ref-C1-Oct`), a mixed-case product
    /// (line 3) and no SKU (line 4), its subscription keys as written.
    /// Returns close 2's stored rows other than its reference keys as this
    /// build wrote them (before its subscription keys were unfolded).
    fn v4_file(p: &Path) -> Vec<String> {
        let mut h = History::open_write(p, Duration::from_secs(1)).unwrap();
        let mut sep = charge("P1", Some("ref-sep"), Some("0001"), 2);
        sep.source_file = "sep.csv".into();
        sep.product_id = Some("cfq7sep".into());
        sep.charge_start = Some("2026-09-01".into());
        sep.charge_end = Some("2026-09-30".into());
        h.close(&record("2026-09", None), vec![Ok::<_, ()>(sep)], || {})
            .unwrap();
        let with = |mut a: AccrualRec, product: &str| {
            a.product_id = Some(product.into());
            Ok::<_, ()>(a)
        };
        let rows = vec![
            with(
                charge("P1", Some("Ref-C1-Oct"), Some("DG7G-Ab"), 2),
                "CFQ7TTC0LFLX",
            ),
            with(
                charge("P2", Some("Ref-C1-Oct"), Some("DG7G-Ab"), 2),
                "CFQ7TTC0LFLX",
            ),
            with(charge("P1", None, Some("0002"), 3), "CfQ7Mixed"),
            with(charge("P1", None, None, 4), "CFQ7TTC0LFLX"),
        ];
        h.close(&read(&h, "2026-10"), rows, || {}).unwrap();
        drop(h);
        let c = Connection::open(p).unwrap();
        let written = other_rows(&c, 2, 0);
        unfold_keys(
            &c,
            2,
            1,
            &[
                ("sub-1|CFQ7TTC0LFLX|DG7G-Ab", 0),
                ("sub-1|CfQ7Mixed|0002", 2),
                ("sub-1|CFQ7TTC0LFLX|", 3),
            ],
        );
        c.execute("DELETE FROM migrations WHERE version = 5", [])
            .unwrap();
        c.pragma_update(None, "user_version", 4).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        written
    }

    #[test]
    fn a_version_4_file_is_read_as_it_is_and_its_product_keys_folded_by_the_next_close() {
        use reverse::ClosedCharges;
        let d = tmp();
        let p = d.path().join("h.db");
        let written = v4_file(&p);
        assert_eq!(probe(&p).unwrap(), Probe::Ours { version: 4 });
        let before = std::fs::read(&p).unwrap();
        let (references, sep) = {
            let c = Connection::open_with_flags(&p, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            assert_eq!(
                stored_keys(&c, 2, 1),
                vec![
                    ("sub-1|CFQ7TTC0LFLX|".into(), 3),
                    ("sub-1|CFQ7TTC0LFLX|DG7G-Ab".into(), 0),
                    ("sub-1|CfQ7Mixed|0002".into(), 2),
                ]
            );
            (
                other_rows(&c, 2, 1),
                [other_rows(&c, 1, 0), other_rows(&c, 1, 1)],
            )
        };
        let found = |lookup: &ClosedLookup, product: &str, sku: Option<&str>| {
            lookup
                .charge(&product_key(product, sku))
                .unwrap()
                .map(|c| (c.accruals.len(), c.accruals[0].accrual.source_line))
        };
        {
            // A reader tries the credit's product and SKU as written, in
            // lower and in upper case: a mixed-case key is found only as
            // written until the file is upgraded.
            let lookup = ClosedLookup::new(History::open_read(&p).unwrap().unwrap(), None).unwrap();
            assert_eq!(
                found(&lookup, "CFQ7TTC0LFLX", Some("DG7G-Ab")),
                Some((2, 2))
            );
            assert_eq!(found(&lookup, "cfq7ttc0lflx", Some("dg7g-ab")), None);
            assert_eq!(found(&lookup, "CfQ7Mixed", Some("0002")), Some((1, 3)));
            assert_eq!(found(&lookup, "cfq7mixed", Some("0002")), None);
            assert_eq!(found(&lookup, "cfq7ttc0lflx", None), Some((1, 4)));
            assert_eq!(found(&lookup, "Cfq7Ttc0lflx", None), Some((1, 4)));
            // The reference keys were folded by version 4 already.
            let by_reference = lookup.charge(&key("REF-C1-OCT", None)).unwrap();
            assert_eq!(by_reference.map(|c| c.accruals.len()), Some(2));
        }
        assert_eq!(
            std::fs::read(&p).unwrap(),
            before,
            "a reader never upgrades"
        );

        let h = upgraded_by_a_close(&p);
        assert_eq!(
            stored_keys(&h.conn, 2, 1),
            vec![
                ("sub-1|cfq7mixed|0002".into(), 2),
                ("sub-1|cfq7ttc0lflx|".into(), 3),
                ("sub-1|cfq7ttc0lflx|dg7g-ab".into(), 0),
            ]
        );
        // The keys and the subscriptions filter as a close of this build
        // writes them; the filter finds the folded keys.
        assert_eq!(other_rows(&h.conn, 2, 0), written);
        let subs: Vec<u8> = h
            .conn
            .query_row(
                "SELECT subscriptions_filter FROM charge_filters WHERE close_id = 2",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let subs = filter::KeyFilter::from_bytes(&subs).unwrap();
        for (product, sku) in [
            ("cfq7mixed", "0002"),
            ("cfq7ttc0lflx", ""),
            ("cfq7ttc0lflx", "dg7g-ab"),
        ] {
            let k = joined_key("sub-1", product, sku);
            assert!(subs.may_contain_joined(&k), "{product:?} {sku:?}");
        }
        assert_eq!(
            other_rows(&h.conn, 2, 1),
            references,
            "the accrual blocks, reference keys and references filter stay as they were"
        );
        assert_eq!(
            [other_rows(&h.conn, 1, 0), other_rows(&h.conn, 1, 1)],
            sep,
            "a close folded already is left as it is"
        );
        let description = migration(&h.conn, 5);
        assert!(description.contains("letter case"), "{description}");
        let lookup = ClosedLookup::new(h, None).unwrap();
        for (product, sku) in [
            ("CFQ7TTC0LFLX", "DG7G-Ab"),
            ("cfq7ttc0lflx", "dg7g-ab"),
            ("Cfq7ttc0lflx", "dG7g-AB"),
        ] {
            let got = found(&lookup, product, Some(sku));
            assert_eq!(got, Some((2, 2)), "{product:?} {sku:?}");
        }
        for product in ["CfQ7Mixed", "cfq7mixed", "CFQ7MIXED", "cFq7mIxEd"] {
            let got = found(&lookup, product, Some("0002"));
            assert_eq!(got, Some((1, 3)), "{product:?}");
        }
        assert_eq!(found(&lookup, "cFQ7TTC0LFLX", None), Some((1, 4)));
    }

    /// The description the migrations table records for `version`.
    fn migration(c: &Connection, version: i32) -> String {
        c.query_row(
            "SELECT description FROM migrations WHERE version = ?1",
            [version],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn a_version_3_file_is_read_as_it_is_and_its_reference_keys_folded_by_the_next_close() {
        use reverse::ClosedCharges;
        let d = tmp();
        let p = d.path().join("h.db");
        v3_file(&p);
        assert_eq!(probe(&p).unwrap(), Probe::Ours { version: 3 });
        let before = std::fs::read(&p).unwrap();
        let (others, sep_keys) = {
            let c = Connection::open_with_flags(&p, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
            assert_eq!(
                reference_keys(&c, 2),
                vec![("REF-C2-OCT".into(), 2), ("Ref-C1-Oct".into(), 0)]
            );
            (
                [other_rows(&c, 1, 0), other_rows(&c, 2, 0)],
                reference_keys(&c, 1),
            )
        };
        let found = |lookup: &ClosedLookup, spelled: &str| {
            lookup
                .charge(&key(spelled, None))
                .unwrap()
                .map(|c| c.accruals.len())
        };
        {
            // A reader finds what version 3 found: the reference as
            // written, in lower or in upper case.
            let lookup = ClosedLookup::new(History::open_read(&p).unwrap().unwrap(), None).unwrap();
            assert_eq!(found(&lookup, "Ref-C1-Oct"), Some(2));
            assert_eq!(found(&lookup, "ref-c2-oct"), Some(1));
            assert_eq!(found(&lookup, "ReF-c2-OcT"), Some(1));
            assert_eq!(found(&lookup, "REF-SEP"), Some(1));
            assert_eq!(found(&lookup, "ref-c1-oct"), None);
        }
        assert_eq!(
            std::fs::read(&p).unwrap(),
            before,
            "a reader never upgrades"
        );

        let h = upgraded_by_a_close(&p);
        assert_eq!(
            reference_keys(&h.conn, 2),
            vec![("ref-c1-oct".into(), 0), ("ref-c2-oct".into(), 2)]
        );
        assert_eq!(reference_keys(&h.conn, 1), sep_keys);
        assert_eq!(
            [other_rows(&h.conn, 1, 0), other_rows(&h.conn, 2, 0)],
            others,
            "only the reference keys change"
        );
        let description = migration(&h.conn, 4);
        assert!(description.contains("letter case"), "{description}");
        let lookup = ClosedLookup::new(h, None).unwrap();
        for spelled in ["Ref-C1-Oct", "ref-c1-oct", "REF-C1-OCT", " rEF-c1-oCT "] {
            assert_eq!(found(&lookup, spelled), Some(2), "{spelled:?}");
        }
        for spelled in ["REF-C2-OCT", "Ref-C2-Oct", "ref-sep", "Ref-Sep"] {
            assert_eq!(found(&lookup, spelled), Some(1), "{spelled:?}");
        }
        let by_keys = lookup.charge(&key("", Some("0002"))).unwrap().unwrap();
        assert_eq!(by_keys.accruals[0].accrual.source_line, 3);
    }

    /// A version 2 file whose closes' rows are interleaved (not as any close
    /// wrote them) is refused by the upgrade and left as it was.
    #[test]
    fn an_upgrade_refuses_interleaved_closes_and_changes_nothing() {
        let d = tmp();
        let p = d.path().join("h.db");
        v2_file(&p);
        Connection::open(&p)
            .unwrap()
            .execute_batch(
                "INSERT INTO accruals(close_id, partner_id, customer_id, program_id, association,
                   subscription_id, charge_date, accrual_month, source_file, source_line, basis, rate,
                   share, amount, currency)
                 VALUES (1, 'P1', 'c1', 'prog', 'dpor', 'sub-1', '2026-09-02', '2026-09', 'sep.csv', 3,
                   '10', '0.05', '1', '0.50', 'USD');",
            )
            .unwrap();
        let e = History::open_write(&p, Duration::from_secs(1))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("close 1 are not one run of rows"), "{e}");
        assert_eq!(probe(&p).unwrap(), Probe::Ours { version: 2 });
        let h = History::open_read(&p).unwrap().unwrap();
        assert_eq!(h.accruals("2026-09", 1, "P1").unwrap().len(), 2);
    }

    /// Runs longer than a block, keys with more entries than a key block:
    /// every charge is found whole, and read back in order.
    #[test]
    fn many_charges_span_blocks_and_are_all_found() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let lines = 3 * KEY_ENTRIES as u64;
        let mut rows = Vec::new();
        for line in 2..2 + lines {
            // Line n has n % 5 + 1 accruals; every line shares the
            // subscription, product and SKU; references are unique.
            for k in 0..line % 5 + 1 {
                let reference = format!("REF-{line}");
                let mut a = charge(&format!("P{k}"), Some(&reference), Some("0001"), line);
                a.amount = format!("{line}.{k}");
                rows.push(a);
            }
        }
        let total = rows.len();
        let input: Vec<Result<AccrualRec, ()>> = rows.iter().cloned().map(Ok).collect();
        h.close(&record("2026-10", None), input, || {}).unwrap();
        drop(h);
        let h = History::open_read(&p).unwrap().unwrap();
        let blocks: i64 = h
            .conn
            .query_row("SELECT count(*) FROM accrual_blocks", [], |r| r.get(0))
            .unwrap();
        assert!(blocks > 3, "{blocks} blocks");
        let keys: Vec<(i64, i64)> = h
            .conn
            .prepare("SELECT kind, entries FROM charge_keys ORDER BY kind, seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            keys.iter().all(|(_, n)| *n <= i64::from(KEY_ENTRIES)),
            "{keys:?}"
        );
        // One key (the shared subscription) over several blocks.
        let subs: Vec<i64> = keys
            .iter()
            .filter(|(k, _)| *k == 1)
            .map(|(_, n)| *n)
            .collect();
        assert!(subs.len() >= 3, "{subs:?}");
        assert_eq!(subs.iter().sum::<i64>(), lines as i64);
        for line in [2, 3, 257, 258, lines / 2, lines + 1] {
            let found = h
                .closed_charges(&key(&format!("REF-{line}"), None))
                .unwrap();
            let want: Vec<&AccrualRec> = rows.iter().filter(|a| a.source_line == line).collect();
            let got: Vec<&AccrualRec> = found.iter().map(|c| &c.accrual).collect();
            assert_eq!(got, want, "line {line}");
        }
        assert_eq!(
            h.closed_charges(&key("", Some("0001"))).unwrap().len(),
            total
        );
        let mut n = 0;
        h.issued_accruals(&[("2026-10".to_string(), 1)], ("2026-10", "2026-10"), |r| {
            assert_eq!(r.amount, rows[n].amount);
            n += 1;
            Ok::<(), HistoryError>(())
        })
        .unwrap();
        assert_eq!(n, total);
    }

    /// A key whose scope leaves the SKU or the product out finds every
    /// charge under it, over several key blocks, and none of a subscription
    /// whose ID merely starts with the same letters (`sub-10`); the filters,
    /// which know whole keys only, do not hide them.
    #[test]
    fn a_key_without_its_sku_or_product_finds_every_charge_under_the_rest() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let skus = 3 * u64::from(KEY_ENTRIES);
        let mut rows = Vec::new();
        let mut line = 2;
        let mut add = |sub: &str, product: Option<&str>, sku: Option<&str>| {
            let mut a = charge("P1", None, sku, line);
            a.subscription_id = sub.into();
            a.product_id = product.map(Into::into);
            rows.push(a);
            line += 1;
        };
        add("sub-0", Some("CFQ7"), Some("0001"));
        for n in 0..skus {
            add("sub-1", Some("CFQ7"), Some(&format!("{n:04}")));
        }
        add("sub-1", Some("CFQ8"), Some("x"));
        add("sub-1", None, None);
        add("sub-10", Some("CFQ7"), Some("0001"));
        add("sub-2", Some("CFQ7"), Some("0001"));
        let input: Vec<Result<AccrualRec, ()>> = rows.iter().cloned().map(Ok).collect();
        h.close(&record("2026-10", None), input, || {}).unwrap();
        drop(h);
        let h = History::open_read(&p).unwrap().unwrap();
        let subs = |k: &reverse::ChargeKey| -> Vec<(String, Option<String>)> {
            h.closed_charges(k)
                .unwrap()
                .into_iter()
                .map(|c| (c.accrual.subscription_id, c.accrual.product_id))
                .collect()
        };
        let whole = key("", Some("0005"));
        assert_eq!(subs(&whole).len(), 1);
        let any_sku = reverse::ChargeKey {
            sku_id: None,
            scope: reverse::Scope::AnySku,
            ..whole.clone()
        };
        let found = subs(&any_sku);
        assert_eq!(found.len() as u64, skus);
        assert!(found
            .iter()
            .all(|(s, p)| s == "sub-1" && p.as_deref() == Some("CFQ7")));
        let any_product = reverse::ChargeKey {
            product_id: String::new(),
            scope: reverse::Scope::AnyProduct,
            ..any_sku
        };
        let found = subs(&any_product);
        assert_eq!(found.len() as u64, skus + 2);
        assert!(found.iter().all(|(s, _)| s == "sub-1"), "{found:?}");
        // Capped: five charges copied, the others counted; none from a
        // skipped period.
        let (five, more) = h.closed_charges_capped(&any_product, 5, None).unwrap();
        assert_eq!((five.len(), more), (5, skus + 2 - 5));
        let (none, more) = h
            .closed_charges_capped(&any_product, 5, Some("2026-10"))
            .unwrap();
        assert_eq!((none.len(), more), (0, 0));
    }

    /// A damaged block is a clear refusal that names the version, never a
    /// panic or a silently short read.
    #[test]
    fn damaged_blocks_are_refused() {
        let d = tmp();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, Duration::from_secs(1)).unwrap();
        let rows: Vec<Result<AccrualRec, ()>> = (2..600)
            .map(|l| Ok(charge("P1", Some(&format!("REF-{l}")), None, l)))
            .collect();
        h.close(&record("2026-10", None), rows, || {}).unwrap();
        drop(h);
        let read = || {
            let h = History::open_read(&p).unwrap().unwrap();
            let r = h.issued_accruals(
                &[("2026-10".to_string(), 1)],
                ("2026-10", "2026-10"),
                |_| Ok::<(), HistoryError>(()),
            );
            let e = h.accruals("2026-10", 1, "P1").map(|_| ());
            (r.map_err(|e| e.to_string()), e.map_err(|e| e.to_string()))
        };
        assert!(read().0.is_ok());
        let c = Connection::open(&p).unwrap();
        for damage in [
            "DELETE FROM accrual_blocks WHERE first = (SELECT max(first) FROM accrual_blocks)",
            "UPDATE accrual_blocks SET data = substr(data, 1, 20) WHERE first = 256",
            "DELETE FROM accrual_blocks WHERE first = 0",
        ] {
            c.execute(damage, []).unwrap();
            let (a, b) = read();
            for e in [a.unwrap_err(), b.unwrap_err()] {
                assert!(
                    e.contains("period 2026-10 version 1") && e.contains("the history is damaged"),
                    "{damage}: {e}"
                );
            }
        }
    }
}
