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
//! - `accruals`: the ledger rows of the period at ledger grain, with their
//!   source line key (file, line; reference, product and SKU IDs and charge
//!   dates where the run recorded them) for matching later credits;
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
mod filter;
pub mod reverse;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};

/// `PRAGMA application_id` of a porledger history: "PORL" in ASCII.
pub const APPLICATION_ID: i32 = 0x504F_524C;

/// The schema version this build reads and writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i32 = 2;

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
    #[error("{path}: {source}")]
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
    if meta.is_dir() {
        return Err(HistoryError::Foreign {
            path: show,
            why: "it is a directory".into(),
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
    Ok(Probe::Ours {
        version: user_version,
    })
}

/// What `run --history` writes into `manifest.json` under `"history"`, for
/// `close` to read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunHistory {
    /// The issued version this run restates (the period was closed when the
    /// run read the history), none when the period was open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restates: Option<u32>,
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
    /// The version the run says it restates (it read the history and found
    /// the period closed at this version); `None` for a first close.
    pub restates: Option<u32>,
    pub inputs: Vec<FileRec>,
    pub outputs: Vec<FileRec>,
    pub lines: Vec<LineRec>,
    pub totals: Vec<TotalRec>,
    pub designations: Vec<DesignationRec>,
    pub usage: Vec<UsageMark>,
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
}

/// A close's key filters: references, and subscription + product + SKU.
type CloseFilters = (filter::KeyFilter, filter::KeyFilter);

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

/// The migrations, in order: `MIGRATIONS[i]` takes schema version `i` to
/// `i + 1`.
const MIGRATIONS: &[(&str, &str)] = &[
    ("porledger history v1", SCHEMA_V1),
    (
        "accruals.line_amount and accruals.reverses (credits against closed months)",
        SCHEMA_V2,
    ),
];

/// The busy timeout of readers (a writer holds the lock for one close).
const READ_WAIT: Duration = Duration::from_secs(60);

impl History {
    /// Opens an existing history read-only (`run`, `history`); `None` when
    /// the file does not exist. Never writes.
    pub fn open_read(path: &Path) -> Result<Option<History>, HistoryError> {
        match probe(path)? {
            Probe::Missing => Ok(None),
            Probe::Blank => {
                blank_is_empty(path)?;
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
                let conn = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|e| sql(path, e))?;
                conn.busy_timeout(READ_WAIT).map_err(|e| sql(path, e))?;
                // Credit look-ups seek each closed period's key tables: keep
                // their upper pages in memory (SQLite's default is 2 MB;
                // pages are allocated as used).
                conn.pragma_update(None, "cache_size", -65_536)
                    .map_err(|e| sql(path, e))?;
                let h = History {
                    conn,
                    path: path.to_path_buf(),
                    wait: READ_WAIT,
                    schema: version,
                    filters: Default::default(),
                };
                h.check_ids()?;
                Ok(Some(h))
            }
        }
    }

    /// Opens the history for writing (`close`), creating it on first use and
    /// upgrading an older schema; `wait` is how long to wait for another
    /// writer.
    pub fn open_write(path: &Path, wait: Duration) -> Result<History, HistoryError> {
        let found = probe(path)?;
        if found == Probe::Blank {
            blank_is_empty(path)?;
        }
        let conn = Connection::open(path).map_err(|e| sql(path, e))?;
        conn.busy_timeout(wait).map_err(|e| sql(path, e))?;
        let mut h = History {
            conn,
            path: path.to_path_buf(),
            wait,
            schema: SCHEMA_VERSION,
            filters: Default::default(),
        };
        let current = matches!(found, Probe::Ours { version } if version == SCHEMA_VERSION);
        if !current {
            h.migrate()?;
        }
        let busy = |e: rusqlite::Error| busy_or(path, wait, e);
        // WAL: readers never block the writer and a killed writer leaves
        // only uncommitted frames, which the next open ignores.
        h.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(busy)?;
        h.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(busy)?;
        // A close inserts millions of accruals in one transaction; their
        // index takes them in random order. With SQLite's default 2 MB page
        // cache the index pages spill to the WAL and are read back from it
        // over and over (a 1M-row month: 35 s, mostly that). 256 MB keeps
        // them in memory (pages are allocated as used: a small close stays
        // small).
        h.conn
            .pragma_update(None, "cache_size", -262_144)
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
        while version < SCHEMA_VERSION {
            let (what, ddl) = MIGRATIONS[version as usize];
            tx.execute_batch(ddl).map_err(|e| sql(&path, e))?;
            version += 1;
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
        if self.schema < 2 {
            return Ok(Vec::new());
        }
        // The latest version of every closed period (few rows), then per
        // close the heads of the matching charges through its part of a key
        // table, then each matching charge's run of rows by rowid. Asked once
        // per credit line: the statements are prepared once per connection.
        let closes: Vec<(i64, String, u32)> = {
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
                .map_err(|e| sql(&self.path, e))?
        };
        let cols = format!("{ACCRUAL_COLUMNS}, line_amount, reverses, rowid, charge_rows");
        let mut heads = self
            .conn
            .prepare_cached(match key.reference() {
                Some(_) => {
                    "SELECT head FROM charge_references
                     WHERE close_id = ?1 AND reference_id = ?2 ORDER BY head"
                }
                None => {
                    "SELECT head FROM charge_subscriptions
                     WHERE close_id = ?1 AND subscription_id = ?2 AND product_id = ?3 AND sku_id = ?4
                     ORDER BY head"
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
        let mut found = Vec::new();
        for (id, period, version) in closes {
            if !self.may_hold(id, key)? {
                continue;
            }
            let rowid = |r: &rusqlite::Row<'_>| r.get::<_, i64>(0);
            let rowids = match key.reference() {
                Some(r) => heads.query_map(params![id, r], rowid),
                None => heads.query_map(
                    params![
                        id,
                        key.subscription_id,
                        key.product_id,
                        key.sku_id.as_deref().unwrap_or("")
                    ],
                    rowid,
                ),
            }
            .map_err(|e| sql(&self.path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| sql(&self.path, e))?;
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
        Ok(found
            .into_iter()
            .map(|(accrual, period, version)| ClosedAccrual {
                accrual,
                period,
                version,
            })
            .collect())
    }

    /// Whether close `id` may hold a charge with `key`, by its key filter
    /// (loaded once per close); `true` when the close has no filter.
    fn may_hold(&self, id: i64, key: &reverse::ChargeKey) -> Result<bool, HistoryError> {
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
        Ok(match (f, key.reference()) {
            (None, _) => true,
            (Some((refs, _)), Some(r)) => refs.may_contain(&[r]),
            (Some((_, subs)), None) => subs.may_contain(&[
                &key.subscription_id,
                &key.product_id,
                key.sku_id.as_deref().unwrap_or(""),
            ]),
        })
    }

    /// The sum of the closed credits recorded against the charge `label`
    /// (`PERIOD vVERSION FILE:LINE`): each credit line's whole amount once,
    /// from the latest version of the period that recorded it.
    pub fn credited(&self, label: &str) -> Result<rust_decimal::Decimal, HistoryError> {
        if self.schema < 2 {
            return Ok(rust_decimal::Decimal::ZERO);
        }
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT c.period, a.source_file, a.source_line, a.line_amount
                 FROM accruals a JOIN closes c ON c.id = a.close_id
                 WHERE a.reverses = ?1
                   AND c.version = (SELECT max(version) FROM closes c2 WHERE c2.period = c.period)",
            )
            .map_err(|e| sql(&self.path, e))?;
        let amounts = st
            .query_map(params![label], |r| r.get::<_, Option<String>>(3))
            .map_err(|e| sql(&self.path, e))?;
        let mut sum = rust_decimal::Decimal::ZERO;
        for a in amounts {
            let a = a.map_err(|e| sql(&self.path, e))?.unwrap_or_default();
            let d = a
                .parse::<rust_decimal::Decimal>()
                .ok()
                .and_then(|d| sum.checked_add(d))
                .ok_or_else(|| HistoryError::Refused {
                    path: self.path.display().to_string(),
                    message: format!(
                        "a credit recorded against {label} has the amount '{a}': not an exact decimal; the history is damaged"
                    ),
                })?;
            sum = d;
        }
        Ok(sum)
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
    /// period, in one transaction; returns the version. Refused when the
    /// period is closed and `rec.restates` is not its latest version, or when
    /// it is not closed and `rec.restates` is set. `pause` is called inside
    /// the transaction after every row is written, before the commit (the
    /// test hook).
    pub fn close<I, E>(
        &mut self,
        rec: &CloseRecord,
        accruals: I,
        pause: impl FnOnce(),
    ) -> Result<u32, CloseError<E>>
    where
        I: IntoIterator<Item = Result<AccrualRec, E>>,
    {
        let path = self.path.clone();
        let wait = self.wait;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| CloseError::History(busy_or(&path, wait, e)))?;
        let s = |e| CloseError::History(sql(&path, e));
        let issued = latest(&tx, &rec.period).map_err(s)?;
        let version = match (issued, rec.restates) {
            (None, None) => 1,
            (Some(n), Some(r)) if n == r => n + 1,
            (Some(n), None) => {
                return Err(CloseError::History(HistoryError::Refused {
                    path: path.display().to_string(),
                    message: format!(
                        "period {} is already closed (version {n}); issued statements never change. To correct it, run the period again with --history so the run publishes adjustment statements, then close that run (version {})",
                        rec.period,
                        n + 1
                    ),
                }))
            }
            (Some(n), Some(r)) => {
                return Err(CloseError::History(HistoryError::Refused {
                    path: path.display().to_string(),
                    message: format!(
                        "the run in --out restates version {r} of period {}, but version {n} has been issued since; run the period again with --history",
                        rec.period
                    ),
                }))
            }
            (None, Some(r)) => {
                return Err(CloseError::History(HistoryError::Refused {
                    path: path.display().to_string(),
                    message: format!(
                        "the run in --out restates version {r} of period {}, which this history does not hold: was it run with another --history?",
                        rec.period
                    ),
                }))
            }
        };
        let id = insert_close(&tx, rec, version).map_err(s)?;
        // Rowids are appended: this close's rows are the ones above the
        // largest rowid before it.
        let before: i64 = tx
            .query_row("SELECT coalesce(max(rowid), 0) FROM accruals", [], |r| {
                r.get(0)
            })
            .map_err(s)?;
        let n = insert_accruals(&tx, id, accruals)?;
        index_charges(&tx, id, before).map_err(s)?;
        store_filters(&tx, id).map_err(s)?;
        tx.execute(
            "UPDATE closes SET accruals = ?1 WHERE id = ?2",
            params![n as i64, id],
        )
        .map_err(s)?;
        pause();
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
    pub fn new(h: History, own_period: Option<String>) -> Result<ClosedLookup, HistoryError> {
        h.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| sql(&h.path, e))?;
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
        let mut found = h.closed_charges(key).map_err(|e| e.to_string())?;
        found.retain(|c| Some(&c.period) != self.own_period.as_ref());
        let Some(accruals) = reverse::one_charge(found)? else {
            return Ok(None);
        };
        let credited = match accruals.first() {
            Some(a) => h
                .credited(&reverse::reverses_label(a))
                .map_err(|e| e.to_string())?,
            None => rust_decimal::Decimal::ZERO,
        };
        Ok(Some(reverse::Charge { accruals, credited }))
    }
}

/// Why a close failed: the history, or the source of the accruals.
#[derive(Debug)]
pub enum CloseError<E> {
    History(HistoryError),
    Source(E),
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

fn insert_close(tx: &Transaction, rec: &CloseRecord, version: u32) -> rusqlite::Result<i64> {
    let partners = rec
        .totals
        .iter()
        .map(|t| t.partner_id.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    tx.execute(
        "INSERT INTO closes(period, version, restates, manifest_sha256, tool_version, rounding, accruals, partners)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7)",
        params![
            rec.period,
            version,
            rec.restates,
            rec.manifest_sha256,
            rec.tool_version,
            rec.rounding,
            partners as i64
        ],
    )?;
    let id = tx.last_insert_rowid();
    {
        let mut st = tx.prepare(
            "INSERT INTO inputs(close_id, path, role, sha256, bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for f in &rec.inputs {
            st.execute(params![id, f.path, f.role, f.sha256, f.bytes as i64])?;
        }
        let mut st = tx.prepare(
            "INSERT INTO outputs(close_id, path, sha256, bytes) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for f in &rec.outputs {
            st.execute(params![id, f.path, f.sha256, f.bytes as i64])?;
        }
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
        // corrected usage report).
        let mut st = tx.prepare(
            "INSERT INTO usage_marks(customer_id, workload, month, mau, close_id) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(customer_id, workload, month) DO UPDATE SET mau = excluded.mau, close_id = excluded.close_id",
        )?;
        for u in &rec.usage {
            st.execute(params![u.customer_id, u.workload, u.month, u.mau, id])?;
        }
    }
    Ok(id)
}

fn insert_accruals<I, E>(tx: &Transaction, id: i64, rows: I) -> Result<u64, CloseError<E>>
where
    I: IntoIterator<Item = Result<AccrualRec, E>>,
{
    let path = tx.path().unwrap_or("history").to_string();
    let s = |e| {
        CloseError::History(HistoryError::Sqlite {
            path: path.clone(),
            source: e,
        })
    };
    let mut st = tx
        .prepare(
            "INSERT INTO accruals(close_id, partner_id, customer_id, program_id, association,
               subscription_id, charge_date, accrual_month, source_file, source_line, reference_id,
               product_id, sku_id, charge_start, charge_end, basis, rate, share, amount, currency,
               designation_line, line_amount, reverses, charge_rows)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)",
        )
        .map_err(s)?;
    // One billing line's accruals, recorded as one run (see SCHEMA_V2).
    let mut run: Vec<AccrualRec> = Vec::new();
    let mut flush = |run: &mut Vec<AccrualRec>| -> Result<(), rusqlite::Error> {
        let keyed = run
            .first()
            .is_some_and(|h| h.reference_id.is_some() || h.product_id.is_some());
        let n = run.len() as i64;
        for (i, a) in run.drain(..).enumerate() {
            let head = i == 0;
            let key = |v: Option<String>| if head { v } else { None };
            st.execute(params![
                id,
                a.partner_id,
                a.customer_id,
                a.program_id,
                a.association,
                a.subscription_id,
                a.charge_date,
                a.accrual_month,
                a.source_file,
                a.source_line as i64,
                key(a.reference_id),
                key(a.product_id),
                key(a.sku_id),
                key(a.charge_start),
                key(a.charge_end),
                a.basis,
                a.rate,
                a.share,
                a.amount,
                a.currency,
                a.designation_line.map(|n| n as i64),
                a.line_amount,
                a.reverses,
                (head && keyed).then_some(n)
            ])?;
        }
        Ok(())
    };
    let mut n = 0u64;
    for r in rows {
        let a = r.map_err(CloseError::Source)?;
        // The keys are the source line's (joined by file and line), so the
        // line alone says where a run ends.
        let same = run
            .first()
            .is_some_and(|h| h.source_line == a.source_line && h.source_file == a.source_file);
        if !same {
            flush(&mut run).map_err(s)?;
        }
        run.push(a);
        n += 1;
    }
    flush(&mut run).map_err(s)?;
    Ok(n)
}

/// Fills the key tables with the heads of close `id`, whose accruals are the
/// rows above rowid `after`. Sorted by key, so that each table's part for
/// this close (the newest close: the end of its B-tree) is built by appending.
fn index_charges(tx: &Transaction, id: i64, after: i64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO charge_references(close_id, reference_id, head)
         SELECT ?1, trim(reference_id), rowid FROM accruals
         WHERE rowid > ?2 AND charge_rows IS NOT NULL AND reference_id IS NOT NULL
           AND trim(reference_id) <> ''
         ORDER BY 2, 3",
        params![id, after],
    )?;
    tx.execute(
        "INSERT INTO charge_subscriptions(close_id, subscription_id, product_id, sku_id, head)
         SELECT ?1, subscription_id, product_id, coalesce(sku_id, ''), rowid FROM accruals
         WHERE rowid > ?2 AND charge_rows IS NOT NULL AND product_id IS NOT NULL
         ORDER BY 2, 3, 4, 5",
        params![id, after],
    )?;
    Ok(())
}

/// Builds and stores close `id`'s key filters from its part of the key
/// tables (read in key order, one range each).
fn store_filters(tx: &Transaction, id: i64) -> rusqlite::Result<()> {
    let count = |table: &str| -> rusqlite::Result<usize> {
        tx.query_row(
            &format!("SELECT count(*) FROM {table} WHERE close_id = ?1"),
            params![id],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| usize::try_from(n).unwrap_or(0))
    };
    let mut refs = filter::KeyFilter::with_capacity(count("charge_references")?);
    let mut st = tx.prepare("SELECT reference_id FROM charge_references WHERE close_id = ?1")?;
    let mut rows = st.query(params![id])?;
    while let Some(r) = rows.next()? {
        refs.insert(&[r.get_ref(0)?.as_str()?]);
    }
    let mut subs = filter::KeyFilter::with_capacity(count("charge_subscriptions")?);
    let mut st = tx.prepare(
        "SELECT subscription_id, product_id, sku_id FROM charge_subscriptions WHERE close_id = ?1",
    )?;
    let mut rows = st.query(params![id])?;
    while let Some(r) = rows.next()? {
        subs.insert(&[
            r.get_ref(0)?.as_str()?,
            r.get_ref(1)?.as_str()?,
            r.get_ref(2)?.as_str()?,
        ]);
    }
    tx.execute(
        "INSERT INTO charge_filters(close_id, references_filter, subscriptions_filter) VALUES (?1, ?2, ?3)",
        params![id, refs.to_bytes(), subs.to_bytes()],
    )?;
    Ok(())
}

/// A blank file is taken only if SQLite sees no table in it (checked
/// read-only, before any write).
fn blank_is_empty(path: &Path) -> Result<(), HistoryError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| sql(path, e))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| sql(path, e))?;
    if tables != 0 {
        return Err(HistoryError::Foreign {
            path: path.display().to_string(),
            why: "an SQLite database of another application".into(),
        });
    }
    Ok(())
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

    fn record(period: &str, restates: Option<u32>) -> CloseRecord {
        CloseRecord {
            period: period.into(),
            manifest_sha256: "ab".into(),
            tool_version: "0".into(),
            rounding: "half-even".into(),
            restates,
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
        assert_eq!(
            h.close(&record("2026-10", Some(1)), no_rows(), || {})
                .unwrap(),
            2
        );
        assert!(h
            .close(&record("2026-10", Some(1)), no_rows(), || {})
            .is_err());
        assert!(h
            .close(&record("2026-11", Some(1)), no_rows(), || {})
            .is_err());
        assert_eq!(h.latest("2026-10").unwrap(), Some(2));
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
            reference_id: reference.into(),
            subscription_id: "sub-1".into(),
            product_id: "CFQ7".into(),
            sku_id: sku.map(Into::into),
            charge_start: day("2026-10-10"),
            charge_end: day("2026-11-09"),
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
        h.close(&record("2026-10", Some(1)), v2, || {}).unwrap();
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
        let keyed: Vec<(i64, Option<i64>)> = db
            .prepare("SELECT source_line, charge_rows FROM accruals WHERE reference_id IS NOT NULL ORDER BY rowid")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(keyed, vec![(2, Some(3)), (3, Some(1))]);
        // The key tables hold the heads only, by key.
        let refs: Vec<(String, i64)> = db
            .prepare("SELECT reference_id, head FROM charge_references ORDER BY close_id, reference_id, head")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            refs,
            vec![("REF-1".to_string(), 1), ("REF-2".to_string(), 4)]
        );
        let subs: i64 = db
            .query_row("SELECT count(*) FROM charge_subscriptions", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(subs, 2);
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
        h.close(&record("2026-10", None), rows, || {}).unwrap();
        drop(h);
        assert_eq!(probe(&p).unwrap(), Probe::Ours { version: 2 });
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
        assert_eq!(n, 2);
    }
}
