//! `porledger tieout`: a finished run against Microsoft's earnings export.
//!
//! Glue only: reads the run (summary.json, manifest.json, ledger.csv and
//! not-eligible.csv, by column name), the rules, the earnings files
//! ([`crate::ingest::earnings`]) and, with `--history`, the issued accruals
//! of the closed periods ([`crate::history::History::issued_accruals`]),
//! feeds the pure [`crate::tieout::TieOut`],
//! and publishes its [`crate::tieout::Report`] through
//! [`crate::render::publish::Staging`] like a run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rust_decimal::Decimal;

use crate::cli::TieoutArgs;
use crate::cmd::Finish;
use crate::config::earnings::EarningsLabels;
use crate::config::{parse_rules, Rules};
use crate::console::{self, Lines};
use crate::dates::{parse_date, Month};
use crate::error::Fatal;
use crate::history::History;
use crate::ingest;
use crate::ingest::earnings::{read_earnings, EarningRow, EarningsRead};
use crate::ingest::FileDigest;
use crate::ledger::{LedgerColumn as C, LedgerReader};
use crate::money::{Currency, ExactArith, RoundingMode};
use crate::render::pdf::tieout::TieoutPage;
use crate::render::pdf::Renderer;
use crate::render::publish::{self, Staging};
use crate::render::tieout as rt;
use crate::render::{excel_unescape, sanitize_file_name};
use crate::tieout::{
    expected_versions, Accrual, Earning, ExpectedVersions, IssuedVersion, Origin, Report, TieOut,
    TieSettings,
};

/// The run a tie-out reads.
pub struct RunInfo {
    pub period: String,
    pub rounding: RoundingMode,
    pub partner_names: Vec<(String, String)>,
    pub rules_path: Option<PathBuf>,
    pub rules_sha256: Option<String>,
    /// The statements' totals per partner ([`ingest::id_key`]) and
    /// currency: the sums of summary.json's `accrual_amount`s (none when a
    /// row of it cannot be read: nothing is shown then).
    pub statement_totals: Option<BTreeMap<(String, Currency), Decimal>>,
}

fn data_err(file: &Path, line: u64, message: String) -> Fatal {
    Fatal::Data {
        file: file.display().to_string(),
        line,
        column: None,
        message,
    }
}

/// What a tie-out needs of a finished run: its `summary.json` (the bytes
/// checked against its manifest) and its manifest.
fn run_info(out: &Path, summary: &[u8], manifest: &serde_json::Value) -> Result<RunInfo, Fatal> {
    let summary_path = out.join("summary.json");
    let summary: serde_json::Value = serde_json::from_slice(summary)
        .map_err(|e| data_err(&summary_path, 0, format!("not a porledger summary: {e}")))?;
    let rounding: RoundingMode = summary["rounding"]
        .as_str()
        .unwrap_or("")
        .parse()
        .map_err(|e: String| data_err(&summary_path, 0, e))?;
    let period = summary["period"].as_str().unwrap_or("").to_string();
    let partner_names = summary["summary"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some((
                r["partner_id"].as_str()?.to_string(),
                r["partner_name"].as_str()?.to_string(),
            ))
        })
        .collect();
    let statement_totals = summary["summary"].as_array().and_then(|rows| {
        let mut totals: BTreeMap<(String, Currency), Decimal> = BTreeMap::new();
        for r in rows {
            let id = r["partner_id"].as_str()?;
            let amount: Decimal = r["accrual_amount"].as_str()?.parse().ok()?;
            let currency = Currency::parse(r["currency"].as_str()?)?;
            let total = totals.entry((ingest::id_key(id), currency)).or_default();
            *total = total.exact_add(amount)?;
        }
        Some(totals)
    });
    let rules = manifest["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["role"] == "rules");
    Ok(RunInfo {
        period,
        rounding,
        partner_names,
        rules_path: rules.and_then(|r| r["path"].as_str()).map(PathBuf::from),
        rules_sha256: rules.and_then(|r| r["sha256"].as_str()).map(str::to_string),
        statement_totals,
    })
}

/// The rules: `--rules`, or the run's own (unchanged) rules file, read once
/// and parsed from the bytes whose SHA-256 was checked.
fn load_rules(args: &TieoutArgs, info: &RunInfo) -> Result<Rules, Fatal> {
    let read = |p: &Path| ingest::read_limited(p, ingest::limits::RULES, "rules");
    let (path, bytes) = match (&args.rules, &info.rules_path) {
        (Some(p), _) => (p.clone(), read(p)?),
        (None, Some(p)) => {
            let bytes = read(p).map_err(|e| {
                Fatal::Input(format!(
                    "the run's rules file {} cannot be read ({e}); give it with --rules",
                    p.display()
                ))
            })?;
            let sha256 = ingest::sha256_hex(&bytes);
            if info.rules_sha256.as_deref() != Some(sha256.as_str()) {
                return Err(Fatal::Input(format!(
                    "the run's rules file {} changed since the run (its SHA-256 differs from \
                     manifest.json): give the rules to tie out with --rules",
                    p.display()
                )));
            }
            (p.clone(), bytes)
        }
        (None, None) => {
            return Err(Fatal::Input(
                "the run's manifest.json names no rules file: give it with --rules".into(),
            ))
        }
    };
    let text = ingest::text_of(&path, bytes)?;
    parse_rules(&text).map_err(|e| Fatal::Config {
        file: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The run's own rules, if its rules file can still be read and is unchanged
/// (its SHA-256 is the manifest's); `None` otherwise (what needs them
/// then falls back on what the run's files say).
fn rules_as_run(manifest: &serde_json::Value) -> Option<Rules> {
    let entry = manifest["inputs"]
        .as_array()?
        .iter()
        .find(|e| e["role"] == "rules")?;
    let path = Path::new(entry["path"].as_str()?);
    let bytes = ingest::read_limited(path, ingest::limits::RULES, "rules").ok()?;
    if entry["sha256"].as_str()? != ingest::sha256_hex(&bytes) {
        return None;
    }
    parse_rules(&ingest::text_of(path, bytes).ok()?).ok()
}

/// Refuses a tie-out directory that is the run directory or inside it: the
/// tie-out is published beside the run it reads, never into it (a run's
/// directory holds only what its manifest lists).
fn outside_run(target: &Path, run: &Path) -> Result<(), Fatal> {
    let run_dir = std::fs::canonicalize(run).map_err(|e| Fatal::io(run, e))?;
    // The nearest part of `target` that exists, resolved, and the rest as given.
    let mut rest = Vec::new();
    let mut at = target;
    let resolved = loop {
        match std::fs::canonicalize(at) {
            Ok(p) => break p,
            Err(_) => match (at.parent(), at.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    at = if parent.as_os_str().is_empty() {
                        Path::new(".")
                    } else {
                        parent
                    };
                }
                // `..` or a root that does not resolve: Staging names it.
                _ => return Ok(()),
            },
        }
    };
    let full = rest.iter().rev().fold(resolved, |p, n| p.join(n));
    if full.starts_with(&run_dir) {
        return Err(Fatal::Input(format!(
            "--tieout-out {}: {} the run directory --out {}; the tie-out is published beside \
             the run it reads, never into it, so nothing was changed (choose another \
             --tieout-out)",
            target.display(),
            if full == run_dir { "is" } else { "is inside" },
            run.display()
        )));
    }
    Ok(())
}

/// `--tieout-out`, or `<RUN_DIR>-tieout` beside the run.
pub fn default_tieout_dir(out: &Path) -> Result<PathBuf, Fatal> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty() && *n != "." && *n != "..")
        .ok_or_else(|| {
            Fatal::Input(format!(
                "--out {}: cannot derive the tie-out directory from it: give --tieout-out",
                out.display()
            ))
        })?;
    // The longest file name of the usual file systems.
    if name.len() + "-tieout".len() > 255 {
        return Err(Fatal::Input(format!(
            "--out {}: its name is too long to add -tieout to (more than 255 bytes): give \
             --tieout-out",
            out.display()
        )));
    }
    Ok(out.with_file_name(format!("{name}-tieout")))
}

pub fn parse_tolerance(s: &str) -> Result<Decimal, Fatal> {
    crate::money::parse_amount(s, false)
        .ok()
        .filter(|d| *d >= Decimal::ZERO)
        .ok_or_else(|| {
            Fatal::Input(format!(
                "--tolerance {s}: not a non-negative decimal amount (e.g. 0.01)"
            ))
        })
}

/// Feeds the ledger of `out` into `tie`. The month is `accrual_month` where
/// the ledger has that column, else the month of `charge_date`. `billed`
/// says whether the export can carry invoice numbers and products (its
/// columns): where it cannot, the ledger's are not read, and the grains are
/// not split by them.
/// What tieout says it does not do with a changed run.
const REFUSAL: &str = "tieout refuses to tie it out (nothing was published)";

fn changed(path: &Path) -> Fatal {
    publish::changed_since_written(path, publish::Kind::Run, REFUSAL)
}

fn read_ledger(
    out: &Path,
    listed: &HashMap<String, FileDigest>,
    tie: &mut TieOut<'_>,
    billed: (bool, bool),
) -> Result<(), Fatal> {
    let path = out.join("ledger.csv");
    if !listed.contains_key("ledger.csv") && listed.contains_key("ledger.parquet") {
        return Err(data_err(
            &path,
            0,
            "this run wrote ledger.parquet; tieout reads ledger.csv: run again with \
             --ledger-format csv"
                .into(),
        ));
    }
    let expected = publish::listed_digest(out, "ledger.csv", listed)?;
    let f = ingest::open_regular(&path)?;
    let shown = path.display().to_string();
    // The ledger's size over its first rows' mean length: the side's list
    // is sized once for it.
    let size = f.metadata().map_err(|e| Fatal::io(&path, e))?.len();
    tie.reserve_accruals(ingest::rows_hint(size, &ingest::head(&path)?));
    let mut rdr = LedgerReader::new(
        &shown,
        ingest::HashingReader::new(std::io::BufReader::with_capacity(1 << 20, f)),
    )?;
    let month_col = rdr.position_of("accrual_month");
    while let Some(row) = rdr.next_row()? {
        let bad = |col: &str, v: &str| Fatal::Data {
            file: shown.clone(),
            line: row.line(),
            column: Some(col.to_string()),
            message: format!("'{v}' is not readable"),
        };
        let month = match month_col.map(|i| row.field(i)) {
            Some(m) if !m.is_empty() => parse_month(m).ok_or_else(|| bad("accrual_month", m))?,
            _ => {
                let d = row.get(C::ChargeDate);
                Month::of(parse_date(d).map_err(|_| bad("charge_date", d))?)
            }
        };
        let amount_text = row.get(C::AccrualAmount);
        let amount: Decimal = amount_text
            .parse()
            .map_err(|_| bad("accrual_amount", amount_text))?;
        let rate_text = row.get(C::Rate);
        let rate: Decimal = rate_text.parse().map_err(|_| bad("rate", rate_text))?;
        let cur = row.get(C::Currency);
        let currency = Currency::parse(cur).ok_or_else(|| bad("currency", cur))?;
        tie.add_accrual(&Accrual {
            partner_id: row.get(C::PartnerId),
            customer_id: row.get(C::CustomerId),
            program_id: row.get(C::ProgramId),
            subscription_id: row.get(C::SubscriptionId),
            invoice_number: if billed.0 {
                row.get(C::InvoiceNumber)
            } else {
                ""
            },
            product_id: if billed.1 { row.get(C::ProductId) } else { "" },
            month,
            currency,
            amount,
            rate,
            origin: Origin::Ledger(row.line()),
        })?;
    }
    if !rdr.get_ref().is(expected) {
        return Err(changed(&path));
    }
    Ok(())
}

fn parse_month(s: &str) -> Option<Month> {
    let (y, m) = s.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    (y > 0 && (1..=12).contains(&m) && s.len() == 7).then(|| Month::from_ym(y, m))
}

/// `--history`: the history (read only) and the issued versions the expected
/// side takes from it (see [`expected_versions`]). A missing or empty file is
/// a user error: a tie-out against nothing issued.
fn open_history(path: &Path, info: &RunInfo) -> Result<OpenHistory, Fatal> {
    let Some(h) = History::open_read(path)? else {
        return Err(Fatal::Input(format!(
            "--history {}: no porledger history there (`porledger close --history FILE` \
             creates it); nothing issued to tie out against",
            path.display()
        )));
    };
    let all = h.closes(None)?;
    let manifests = all
        .iter()
        .map(|c| ((c.period.clone(), c.version), c.manifest_sha256.clone()))
        .collect();
    let closes: Vec<IssuedVersion> = all
        .into_iter()
        .map(|c| IssuedVersion {
            period: c.period,
            version: c.version,
            rounding: c.rounding,
        })
        .collect();
    if closes.is_empty() {
        return Err(Fatal::Input(format!(
            "--history {}: no period is closed in it; nothing issued to tie out against",
            path.display()
        )));
    }
    let versions = expected_versions(&info.period, &closes)
        .map_err(|e| Fatal::Input(format!("--history {}: {e}", path.display())))?;
    // The file the tie-out read, wherever it is run from later.
    let absolute = std::fs::canonicalize(path).map_err(|e| Fatal::io(path, e))?;
    Ok(OpenHistory {
        h,
        versions,
        manifests,
        absolute,
    })
}

/// A history opened for a tie-out.
struct OpenHistory {
    h: History,
    versions: ExpectedVersions,
    /// The SHA-256 of the manifest each close recorded, per (period, version):
    /// which close a version is, not only its number.
    manifests: BTreeMap<(String, u32), String>,
    /// The history file's canonical path.
    absolute: PathBuf,
}

/// Refuses to tie out a run of a closed period that is not the period's
/// current version, when the run says which version it is: the run closed
/// as an earlier version (its manifest's SHA-256 is that close's, or its
/// `closed.json` names that version), or a restatement of an earlier
/// version than the latest (its manifest's `history.restates`; a run made
/// with `--history` while the period was open restates none). Its ledger
/// would be expected in the place of what is issued now. A run that says
/// nothing of the history (made without `--history`) is taken as the
/// period's restatement. `closes`: the run's period's closes.
fn refuse_superseded(
    out: &Path,
    history: &Path,
    run_manifest: &publish::Manifest,
    period: &str,
    closes: &[crate::history::CloseInfo],
) -> Result<(), Fatal> {
    let Some(latest) = closes.iter().max_by_key(|c| c.version) else {
        return Ok(());
    };
    if latest.manifest_sha256 == run_manifest.sha256 {
        return Ok(());
    }
    let current = format!(
        "the current version is {} (closed from the run whose manifest.json has SHA-256 {}; \
         its directory holds closed.json with \"version\": {})",
        latest.version, latest.manifest_sha256, latest.version
    );
    let what = "its ledger is not what is issued now, so tieout refuses to expect it in the \
                place of the current version (nothing was published); tie out the current \
                version's run, or run the period again with --history to restate it and tie \
                out that run";
    let closed_as = closes
        .iter()
        .find(|c| c.manifest_sha256 == run_manifest.sha256)
        .map(|c| c.version)
        .or_else(|| {
            crate::render::closed::read(out)
                .filter(|m| m.period == period && m.version < latest.version)
                .map(|m| m.version)
        });
    if let Some(v) = closed_as {
        return Err(Fatal::Input(format!(
            "--out {}: holds {period} version {v} as it was closed, superseded in --history {} \
             by version {}: {current}; {what}",
            out.display(),
            history.display(),
            latest.version,
        )));
    }
    let read = &run_manifest.json["history"];
    if !read.is_object() {
        return Ok(());
    }
    let restates = read["restates"].as_u64().unwrap_or(0);
    if u64::from(latest.version) > restates {
        let was = match restates {
            0 => format!("was run while {period} was open (its manifest.json restates no version)"),
            r => format!("restates {period} version {r} (its manifest.json)"),
        };
        return Err(Fatal::Input(format!(
            "--out {}: {was}, but {period} version {} was closed since from another run \
             (--history {}): {current}; {what}",
            out.display(),
            latest.version,
            history.display(),
        )));
    }
    Ok(())
}

/// What the expected side took from the history (for tieout.json).
pub struct HistoryUse {
    /// As `--history` gave it (for the console).
    pub path: String,
    /// Its canonical path (for tieout.json and the manifest).
    pub absolute: String,
    /// The SHA-256 of the manifest each used version's close recorded.
    pub manifests: BTreeMap<(String, u32), String>,
    /// The earnings' first and last transaction month: the issued accruals
    /// of these accrual months are expected.
    pub months: Option<(Month, Month)>,
    pub versions: ExpectedVersions,
    /// Issued accruals taken, per used version (period, version).
    pub rows: BTreeMap<(String, u32), u64>,
}

/// Feeds the issued accruals of `versions` of the accrual months the
/// earnings cover into `tie`, and refuses a used version whose rounding is
/// not the run's (one grain would be rounded two ways).
fn read_issued(
    path: &Path,
    open: OpenHistory,
    info: &RunInfo,
    tie: &mut TieOut<'_>,
) -> Result<HistoryUse, Fatal> {
    let OpenHistory {
        h,
        versions,
        manifests,
        absolute,
    } = open;
    let mut rows: BTreeMap<(String, u32), u64> = BTreeMap::new();
    let months = tie.earnings_months();
    if let Some((first, last)) = months {
        let list: Vec<(String, u32)> = versions
            .used
            .iter()
            .map(|v| (v.period.clone(), v.version))
            .collect();
        let (from, to) = (first.to_string(), last.to_string());
        // Counted per version as a run of rows: rows of a version come together.
        let mut current: Option<((String, u32), u64)> = None;
        h.issued_accruals(&list, (&from, &to), |r| -> Result<(), Fatal> {
            let bad = |what: &str, value: &str| {
                Fatal::Input(format!(
                    "--history {}: the accrual issued in {} v{} for {}:{} has {what} '{value}': \
                     the history is damaged",
                    path.display(),
                    r.period,
                    r.version,
                    r.source_file,
                    r.source_line
                ))
            };
            let month = if r.accrual_month.is_empty() {
                Month::of(parse_date(r.charge_date).map_err(|_| bad("charge_date", r.charge_date))?)
            } else {
                parse_month(r.accrual_month).ok_or_else(|| bad("accrual_month", r.accrual_month))?
            };
            if month < first || month > last {
                return Ok(());
            }
            let amount: Decimal = r.amount.parse().map_err(|_| bad("amount", r.amount))?;
            let rate: Decimal = r.rate.parse().map_err(|_| bad("rate", r.rate))?;
            let currency =
                Currency::parse(r.currency).ok_or_else(|| bad("currency", r.currency))?;
            tie.add_accrual(&Accrual {
                partner_id: r.partner_id,
                customer_id: r.customer_id,
                program_id: r.program_id,
                subscription_id: r.subscription_id,
                // The history keeps neither: such a grain is compared
                // without them.
                invoice_number: "",
                product_id: "",
                month,
                currency,
                amount,
                rate,
                origin: Origin::Issued {
                    period: r.period,
                    version: r.version,
                    source_file: r.source_file,
                    source_line: r.source_line,
                },
            })?;
            match &mut current {
                Some((k, n)) if k.0 == r.period && k.1 == r.version => *n += 1,
                _ => {
                    if let Some((k, n)) = current.take() {
                        *rows.entry(k).or_default() += n;
                    }
                    current = Some(((r.period.to_string(), r.version), 1));
                }
            }
            Ok(())
        })?;
        if let Some((k, n)) = current {
            *rows.entry(k).or_default() += n;
        }
    }
    for v in &versions.used {
        if !rows.contains_key(&(v.period.clone(), v.version)) {
            continue;
        }
        let mode: RoundingMode = v.rounding.parse().map_err(|e: String| {
            Fatal::Input(format!(
                "--history {}: {} v{}: {e}; the history is damaged",
                path.display(),
                v.period,
                v.version
            ))
        })?;
        if mode != info.rounding {
            return Err(Fatal::Input(format!(
                "--history {}: {} v{} was issued with rounding {}, this run rounds {}: the \
                 expected amounts of one tie-out are rounded one way; tie out a run made with \
                 the rules' rounding = \"{}\" (or an export of the other months only)",
                path.display(),
                v.period,
                v.version,
                v.rounding,
                info.rounding.as_str(),
                v.rounding
            )));
        }
    }
    Ok(HistoryUse {
        path: path.display().to_string(),
        absolute: absolute.display().to_string(),
        manifests,
        months,
        versions,
        rows,
    })
}

/// Feeds the not-eligible rows of the customers the earnings name.
fn read_not_eligible(
    out: &Path,
    listed: &HashMap<String, FileDigest>,
    tie: &mut TieOut<'_>,
) -> Result<(), Fatal> {
    let path = out.join("not-eligible.csv");
    if !listed.contains_key("not-eligible.csv") && !path.exists() {
        // Older runs: no closest reason from billing lines.
        return Ok(());
    }
    let expected = publish::listed_digest(out, "not-eligible.csv", listed)?;
    let f = ingest::open_regular(&path)?;
    let mut rdr = csv::Reader::from_reader(ingest::HashingReader::new(
        std::io::BufReader::with_capacity(1 << 20, f),
    ));
    let header = rdr
        .headers()
        .map_err(|e| data_err(&path, 1, e.to_string()))?
        .clone();
    let [cust, sub, date, reason, detail, file, line] = crate::csv_text::columns(
        &header,
        &path,
        "not-eligible.csv",
        [
            "customer_id",
            "subscription_id",
            "charge_date",
            "reason",
            "detail",
            "source_file",
            "source_line",
        ],
    )?;
    let mut rec = csv::StringRecord::new();
    while rdr
        .read_record(&mut rec)
        .map_err(|e| data_err(&path, 0, e.to_string()))?
    {
        let g = |i: usize| excel_unescape(rec.get(i).unwrap_or(""));
        if !tie.names_customer(g(cust)) {
            continue;
        }
        let Ok(d) = parse_date(g(date)) else {
            continue;
        };
        tie.add_not_eligible(
            g(cust),
            g(sub),
            Month::of(d),
            g(reason),
            g(detail),
            (g(file), g(line)),
        )?;
    }
    if !rdr.get_ref().is(expected) {
        return Err(changed(&path));
    }
    Ok(())
}

/// The tie-out's view of an earnings row.
fn earning_of<'a>(e: &EarningRow<'a>) -> Earning<'a> {
    Earning {
        file: e.file,
        line: e.line,
        participant_id: e.participant_id,
        participant_name: e.participant_name,
        labels: EarningsLabels {
            program_name: e.program_name,
            lever: e.lever,
            engagement_name: e.engagement_name,
            partner_association: e.partner_association,
        },
        customer_id: e.customer_id,
        customer_name: e.customer_name,
        subscription_id: e.subscription_id,
        invoice_number: e.invoice_number,
        product_id: e.product_id,
        month: Month::of(e.date),
        currency: e.currency,
        amount: e.amount,
        rate: e.rate,
        reason_code: e.reason_code,
    }
}

/// Earnings rows copied out of the reader's buffers (their texts one after
/// another in `text`), to be added to the tie-out on another thread.
#[derive(Default)]
struct EarningsBatch {
    text: String,
    rows: Vec<BatchRow>,
}

/// One row of an [`EarningsBatch`]: where each of its texts ends in the
/// batch's text (each starts where the one before ends), and the rest.
struct BatchRow {
    start: u32,
    ends: [u32; 12],
    file: u32,
    line: u64,
    month: Month,
    currency: Currency,
    amount: Decimal,
    rate: Option<Decimal>,
}

impl EarningsBatch {
    /// Rows per batch; a batch is also handed on once its text passes
    /// [`EarningsBatch::TEXT`] bytes, so offsets stay far below `u32::MAX`
    /// (a row is at most [`ingest::records::MAX_RECORD_BYTES`]).
    const ROWS: usize = 4096;
    const TEXT: usize = 4 << 20;

    fn is_full(&self) -> bool {
        self.rows.len() >= Self::ROWS || self.text.len() >= Self::TEXT
    }

    fn push(&mut self, e: &Earning<'_>) {
        let start = self.text.len() as u32;
        let texts = [
            e.participant_id,
            e.participant_name,
            e.labels.program_name,
            e.labels.lever,
            e.labels.engagement_name,
            e.labels.partner_association,
            e.customer_id,
            e.customer_name,
            e.subscription_id,
            e.invoice_number,
            e.product_id,
            e.reason_code,
        ];
        let mut ends = [0u32; 12];
        for (end, t) in ends.iter_mut().zip(texts) {
            self.text.push_str(t);
            *end = self.text.len() as u32;
        }
        self.rows.push(BatchRow {
            start,
            ends,
            file: e.file,
            line: e.line,
            month: e.month,
            currency: e.currency,
            amount: e.amount,
            rate: e.rate,
        });
    }

    /// Adds the batch's rows to `tie`, in order.
    fn add_to(&self, tie: &mut TieOut<'_>) -> Result<(), Fatal> {
        for r in &self.rows {
            let mut at = r.start as usize;
            let t = r.ends.map(|end| {
                let s = &self.text[at..end as usize];
                at = end as usize;
                s
            });
            tie.add_earning(&Earning {
                file: r.file,
                line: r.line,
                participant_id: t[0],
                participant_name: t[1],
                labels: EarningsLabels {
                    program_name: t[2],
                    lever: t[3],
                    engagement_name: t[4],
                    partner_association: t[5],
                },
                customer_id: t[6],
                customer_name: t[7],
                subscription_id: t[8],
                invoice_number: t[9],
                product_id: t[10],
                month: r.month,
                currency: r.currency,
                amount: r.amount,
                rate: r.rate,
                reason_code: t[11],
            })?;
        }
        Ok(())
    }
}

/// Reads the earnings files into `tie`. With more than one worker thread the
/// reading (I/O, SHA-256, records, fields, `earningId`s) and the adding to
/// `tie` run on two threads, rows handed over in batches, like `run`'s reader
/// thread; with one, both on this thread.
fn read_earnings_into(
    files: &[ingest::InputFile],
    tie: &mut TieOut<'_>,
) -> Result<EarningsRead, Fatal> {
    if rayon::current_num_threads() < 2 {
        let mut failed = None;
        let read = read_earnings(files, &mut |e| {
            if failed.is_none() {
                failed = tie.add_earning(&earning_of(e)).err();
            }
        })?;
        return match failed {
            Some(e) => Err(e),
            None => Ok(read),
        };
    }
    std::thread::scope(|s| {
        let (tx, rx) = crossbeam_channel::bounded::<EarningsBatch>(4);
        let (spare_tx, spare_rx) = crossbeam_channel::unbounded::<EarningsBatch>();
        let adder = s.spawn(move || -> Result<(), Fatal> {
            for mut batch in rx {
                batch.add_to(tie)?;
                batch.text.clear();
                batch.rows.clear();
                // The reader may have finished: then the batch is dropped.
                let _ = spare_tx.send(batch);
            }
            Ok(())
        });
        let mut batch = EarningsBatch::default();
        let mut stopped = false;
        let read = read_earnings(files, &mut |e| {
            if stopped {
                return;
            }
            batch.push(&earning_of(e));
            if batch.is_full() {
                let next = spare_rx.try_recv().unwrap_or_default();
                // Fails only when the adder stopped on an error: it is
                // reported below, and the rest is not worth handing over.
                stopped = tx.send(std::mem::replace(&mut batch, next)).is_err();
            }
        });
        if !stopped && !batch.rows.is_empty() {
            let _ = tx.send(batch);
        }
        drop(tx);
        let added = adder
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let read = read?;
        added?;
        Ok(read)
    })
}

pub fn tieout(args: &TieoutArgs) -> Result<Finish, Fatal> {
    let threads = crate::settings::threads(args.threads)?;
    crate::cmd::pool(threads)?.install(|| tieout_on_pool(args))
}

/// [`tieout`] on its worker pool.
fn tieout_on_pool(args: &TieoutArgs) -> Result<Finish, Fatal> {
    let start = Instant::now();
    let mut timings = console::TieoutTimings::default();
    let tolerance = parse_tolerance(&args.tolerance)?;
    // The run as porledger wrote it: what is read of it is checked against
    // its manifest (summary.json here, ledger.csv and not-eligible.csv as
    // they are read), so a changed run is never tied out.
    let run_manifest = publish::read_run_manifest(&args.out, "tieout")?;
    let listed = &run_manifest.outputs;
    let summary = publish::read_listed(
        &args.out,
        publish::Kind::Run,
        "summary.json",
        listed,
        REFUSAL,
    )?;
    let info = run_info(&args.out, &summary, &run_manifest.json)?;
    let rules = load_rules(args, &info)?;
    // A history that cannot be used fails before any reading.
    let history = match &args.history {
        Some(p) => {
            let open = open_history(p, &info)?;
            // A run made with --history must have read this history, and
            // no earlier month may have been closed or restated since (its
            // credits reversed what was issued then): what `close` checks.
            if let Some(h) = run_manifest.json.get("history").filter(|h| h.is_object()) {
                let read = serde_json::from_value::<crate::history::RunHistory>(h.clone())
                    .map_err(|e| {
                        Fatal::Input(format!(
                            "{}: \"history\": {e}",
                            args.out.join("manifest.json").display()
                        ))
                    })?;
                open.h.check_read_by(&info.period, &read, "tie out")?;
            }
            if open.versions.replaced.is_some() {
                let closes = open.h.closes(Some(&info.period))?;
                refuse_superseded(&args.out, p, &run_manifest, &info.period, &closes)?;
            }
            Some((p, open))
        }
        None => None,
    };
    let renderer = if args.no_pdf {
        None
    } else {
        Some(Renderer::load(args.template.as_deref(), &args.locale)?)
    };
    let target = match &args.tieout_out {
        Some(d) => d.clone(),
        None => default_tieout_dir(&args.out)?,
    };
    outside_run(&target, &args.out)?;
    // The clock is read here, at the edge; the core gets the day.
    let as_of = args.as_of.unwrap_or_else(today_utc);
    let settings = TieSettings {
        tolerance,
        as_of,
        rounding: info.rounding,
    };
    let mut tie = TieOut::new(&rules, settings);
    for (id, name) in &info.partner_names {
        tie.add_partner_name(id, name)?;
    }
    // A partner paid only for closed periods: the name it was issued under.
    if let Some((_, open)) = &history {
        for (id, name) in open.h.partner_names()? {
            tie.add_partner_name(&id, &name)?;
        }
    }
    // The two sides are read at once, each into its own accumulator.
    let files = ingest::discover(&args.earnings, "--earnings")?;
    let heads = ingest::earnings::heads(&files);
    let billed = heads.columns;
    tie.reserve_earnings(heads.rows_hint);
    let mut ledger_side = TieOut::for_ledger(&rules, settings);
    let ((read, earnings_time), (ledger, ledger_time)) = rayon::join(
        || {
            let t = Instant::now();
            (read_earnings_into(&files, &mut tie), t.elapsed())
        },
        || {
            let t = Instant::now();
            (
                read_ledger(&args.out, listed, &mut ledger_side, billed),
                t.elapsed(),
            )
        },
    );
    let read = read?;
    ledger?;
    // The files' digests are known once they are read.
    if !args.allow_duplicate_inputs {
        ingest::check_duplicate_digests(
            read.files
                .iter()
                .map(|(name, d)| (name.as_str(), d.sha256.as_str())),
        )?;
    }
    (timings.earnings, timings.ledger) = (earnings_time, ledger_time);
    console::phase_memory("earnings and ledger read");
    let t = Instant::now();
    tie.add_accruals_of(ledger_side)?;
    timings.join = t.elapsed();
    console::phase_memory("sides joined");
    let t = Instant::now();
    // The issued side needs the months the earnings cover: after them.
    let history_use = match history {
        Some((p, open)) => Some(read_issued(p, open, &info, &mut tie)?),
        None => None,
    };
    read_not_eligible(&args.out, listed, &mut tie)?;
    console::phase_memory("not-eligible read");
    timings.rest = t.elapsed();
    let names: Vec<String> = read.files.iter().map(|(n, _)| n.clone()).collect();
    let staging = Staging::new(&target, publish::Kind::Tieout)?;
    let dir = staging.dir.clone();
    let files = &staging.files;
    // The rows are written as they are classified, never all held.
    let t = Instant::now();
    let mut first_rows = None;
    let report = write_rows(
        &staging,
        tie,
        &names,
        &info,
        renderer.as_ref(),
        as_of,
        tolerance,
        &mut first_rows,
    )?;
    let written = Instant::now();
    let first_rows = first_rows.unwrap_or(written);
    (timings.sort, timings.write) = (first_rows - t, written - first_rows);
    console::phase_memory("classified, rows written");
    let accounting = rt::Accounting::of(&read, &report);
    if !accounting.balanced {
        return Err(Fatal::Input(
            "internal error: the earnings row accounting does not add up; nothing was published"
                .into(),
        ));
    }
    let head = rt::JsonHead {
        run: &args.out.display().to_string(),
        period: &info.period,
        as_of: as_of.to_string(),
        tolerance,
        read: &read,
        history: history_use.as_ref().map(history_json),
        // With a history, the expected side holds issued accruals of other
        // periods too: not what the run's statements total.
        statement_totals: info
            .statement_totals
            .as_ref()
            .filter(|_| history_use.is_none()),
    };
    rt::write_tieout_json(files, &dir, &head, &report)?;
    rt::write_rejects(files, &dir.join("rejects.csv"), &read)?;
    let mut manifest = serde_json::json!({
        "tool": "porledger",
        "version": env!("CARGO_PKG_VERSION"),
        "kind": "tieout",
        "run": args.out.display().to_string(),
        // The run read, exactly, and its data without the PDFs:
        // `explain --tieout-row` refuses a run written again since, not one
        // whose PDFs were rendered again.
        "run_manifest_sha256": run_manifest.sha256,
        "run_data_sha256": run_data_sha256(&run_manifest),
        "outputs": publish::hash_outputs(&dir, files)?,
    });
    if let Some(h) = &history_use {
        manifest["history"] = serde_json::Value::String(h.absolute.clone());
    }
    publish::write_json(files, &dir.join("manifest.json"), &manifest)?;
    staging.commit()?;
    console::phase_memory("published");
    timings.publish = written.elapsed();
    timings.total = start.elapsed();
    timings.earnings_rows = read.rows_read;
    timings.rows = report.row_count;
    console::tieout_timings(&timings);
    if !args.quiet {
        if let Some(h) = &history_use {
            crate::say!("{}", history_summary(h));
        }
        for line in console_summary(&report, &accounting, &target) {
            crate::say!("{line}");
        }
    }
    Ok(if report.differences > 0 || accounting.rejected > 0 {
        Finish::Differences
    } else {
        Finish::Clean
    })
}

/// The `history` object of tieout.json.
fn history_json(h: &HistoryUse) -> serde_json::Value {
    let version = |v: &IssuedVersion| {
        let key = (v.period.clone(), v.version);
        serde_json::json!({
            "period": v.period,
            "version": v.version,
            "rounding": v.rounding,
            "accruals": h.rows.get(&key).copied().unwrap_or(0),
            // Which close: `explain --tieout-row` refuses a history whose
            // close of this version is another.
            "manifest_sha256": h.manifests.get(&key),
        })
    };
    serde_json::json!({
        "path": h.absolute,
        "accrual_months": h.months.map(|(a, b)| format!("{a}..{b}")),
        "versions": h.versions.used.iter().map(version).collect::<Vec<_>>(),
        "replaced_by_this_run": h.versions.replaced.as_ref().map(|v| serde_json::json!({
            "period": v.period,
            "version": v.version,
        })),
    })
}

/// Classifies `tie` and writes `tieout.csv` and each partner's `tieout.csv`
/// (and `tieout.pdf` with a renderer) into the staging directory while the
/// rows are classified, a batch at a time; returns the report (no rows).
/// `first_rows` is set to when the first rows reached the writer.
#[allow(clippy::too_many_arguments)]
fn write_rows(
    staging: &Staging,
    tie: TieOut<'_>,
    names: &[String],
    info: &RunInfo,
    renderer: Option<&Renderer>,
    as_of: chrono::NaiveDate,
    tolerance: Decimal,
    first_rows: &mut Option<Instant>,
) -> Result<Report, Fatal> {
    let partners = staging.dir.join("partners");
    let partner_file = |id: &str| partners.join(sanitize_file_name(id)).join("tieout.csv");
    let mut writer = rt::TieoutWriter::create(&staging.files, &staging.dir, names, &partner_file)?;
    let none = BTreeMap::new();
    let report = tie.finish_with(|report, rows, done| {
        first_rows.get_or_insert_with(Instant::now);
        // The writer creates each partner's directory with its file.
        let finished = writer.rows(report, rows, done)?;
        let Some(r) = renderer else {
            return Ok(());
        };
        for p in finished {
            let id = p.partner_id.as_str();
            let totals = report.partner_totals.get(id).unwrap_or(&none);
            let page = TieoutPage {
                partner_id: id,
                partner_name: report
                    .partner_names
                    .get(id)
                    .map(|s| s.as_str())
                    .unwrap_or(""),
                period: &info.period,
                as_of,
                tolerance,
                totals: totals.iter().map(|(c, t)| (*c, t)).collect(),
                differences: &p.differences,
            };
            let pdf = r.tieout_statement(&page);
            let path = partners.join(sanitize_file_name(id)).join("tieout.pdf");
            publish::write_file(&staging.files, &path, &pdf)?;
        }
        Ok(())
    })?;
    writer.finish()?;
    Ok(report)
}

/// What `--history` added to the expected side, for the console.
fn history_summary(h: &HistoryUse) -> String {
    let used: Vec<String> = h
        .rows
        .iter()
        .map(|((p, v), n)| format!("{p} v{v} ({n} accruals)"))
        .collect();
    let mut s = match h.months {
        Some((a, b)) => format!(
            "history {}: expected for accrual months {a}..{b} also what was issued in {}",
            h.path,
            if used.is_empty() {
                "no closed period".to_string()
            } else {
                used.join(", ")
            }
        ),
        None => format!("history {}: no earnings, nothing issued expected", h.path),
    };
    if let Some(v) = &h.versions.replaced {
        s.push_str(&format!(
            "; {} v{} is this run's period: the run is expected in its place",
            v.period, v.version
        ));
    }
    s
}

/// The tie-out's summary lines (each printed as one line: a partner ID
/// never breaks one).
fn console_summary(r: &Report, a: &rt::Accounting, target: &Path) -> Vec<String> {
    let mut s = vec![format!(
        "earnings: {} rows read = {} duplicate earningId + {} matched + {} unmatched + {} \
         adjustments + {} rejected",
        a.rows_read, a.duplicates, a.matched, a.unmatched, a.adjustments, a.rejected
    )];
    let classes: Vec<String> = r
        .classes
        .iter()
        .map(|(c, n)| format!("{} {n}", c.as_str()))
        .collect();
    s.push(format!(
        "tie-out: {} rows ({}); {} differ",
        r.row_count,
        classes.join(", "),
        r.differences
    ));
    for (p, by) in &r.partner_totals {
        for (c, t) in by {
            let m = |d: Decimal| crate::money::Exact::of(d, *c);
            s.push(format!(
                "  {p} {c}: expected {} paid {} adjustments {} difference {}",
                m(t.expected),
                m(t.paid),
                m(t.adjustments),
                m(t.difference)
            ));
        }
    }
    s.push(format!("published: {}", target.display()));
    s
}

/// What `explain --tieout-row` does not do with a changed tie-out or run.
const EXPLAIN_REFUSAL: &str = "explain refuses to explain from it";

/// What ties a tie-out to the run it read, the PDFs aside: the SHA-256 of
/// the run's manifest (as JSON with sorted keys) without its `pdf` and the
/// PDFs among its `outputs`. `render` changes only those, so a run whose
/// PDFs were rendered again (in another locale) keeps it; a run written
/// again has other inputs, counts or files (`ledger.csv`, `summary.json`,
/// ...), so another.
pub fn run_data_sha256(run: &publish::Manifest) -> String {
    let mut data = run.json.clone();
    if let Some(m) = data.as_object_mut() {
        m.remove("pdf");
        if let Some(outputs) = m.get_mut("outputs").and_then(|o| o.as_array_mut()) {
            outputs.retain(|e| !e["path"].as_str().is_some_and(|p| p.ends_with(".pdf")));
        }
    }
    crate::ingest::sha256_hex(&serde_json::to_vec(&data).unwrap_or_default())
}

/// The manifests of the tie-out `tieout_dir` and of the run `run`, once it
/// is sure the tie-out read this run: a run written again since (even into
/// the same directory) is not the one whose ledger lines the tie-out's rows
/// name. The same run with its PDFs rendered again is (see
/// [`run_data_sha256`]).
fn tieout_of_run(
    tieout_dir: &Path,
    run: &Path,
) -> Result<(publish::Manifest, publish::Manifest), Fatal> {
    // Read only: a missing or foreign directory is named as such (not as
    // one that would be replaced), with how to make a tie-out.
    let make = format!(
        "make one with `porledger tieout --out {} --earnings FILE...` (it is written to \
         <RUN_DIR>-tieout, or to --tieout-out DIR: give explain the same --tieout-out)",
        run.display()
    );
    match std::fs::metadata(tieout_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Fatal::Input(format!(
                "{}: no tie-out there (the directory does not exist); {make}",
                tieout_dir.display()
            )))
        }
        Err(e) => return Err(Fatal::io(tieout_dir, e)),
        Ok(m) if !m.is_dir() => {
            return Err(Fatal::Input(format!(
                "{}: not a tie-out (not a directory); {make}",
                tieout_dir.display()
            )))
        }
        Ok(_) => {}
    }
    if std::fs::symlink_metadata(tieout_dir.join("manifest.json")).is_err() {
        return Err(Fatal::Input(format!(
            "{}: not a tie-out's output directory (no manifest.json); {make}",
            tieout_dir.display()
        )));
    }
    let tieout = publish::read_manifest(tieout_dir)?;
    if tieout.kind.as_deref() != Some("tieout") {
        return Err(Fatal::Input(format!(
            "{}: not a porledger tie-out (its manifest.json is not a tie-out's); give the \
             tie-out's directory with --tieout-out",
            tieout_dir.display()
        )));
    }
    let ran = publish::read_run_manifest(run, "explain")?;
    let data = tieout.json["run_data_sha256"].as_str();
    match tieout.json["run_manifest_sha256"].as_str() {
        Some(sha) if sha == ran.sha256 => Ok((tieout, ran)),
        Some(_) if data.is_some_and(|d| d == run_data_sha256(&ran)) => Ok((tieout, ran)),
        Some(_) => Err(Fatal::Input(format!(
            "{}: not the run the tie-out {} read (its manifest.json changed since, and not \
             only in its PDFs: the run was written again), so the ledger lines the tie-out \
             names may not be these; run `porledger tieout` again",
            run.display(),
            tieout_dir.display()
        ))),
        None => Err(Fatal::Input(format!(
            "{}: its manifest.json does not say which run it read (written by an earlier \
             porledger); run `porledger tieout` again",
            tieout_dir.display()
        ))),
    }
}

/// `porledger explain --tieout-row ROW`: the row of `tieout_dir/tieout.csv`,
/// then every ledger line behind it (with its billing source), every issued
/// accrual of the history behind it (`history`, else the history the
/// tie-out's `tieout.json` names) and the earnings rows behind it.
pub fn explain_row(
    run: &Path,
    tieout_dir: &Path,
    id: &str,
    history: Option<&Path>,
) -> Result<String, Fatal> {
    // The tie-out and the run as porledger wrote them, and the run the one
    // the tie-out read: every file read here is checked against its
    // manifest, so a row is never explained from changed files.
    let (tieout_manifest, run_manifest) = tieout_of_run(tieout_dir, run)?;
    let path = tieout_dir.join("tieout.csv");
    let expected = publish::listed_digest(tieout_dir, "tieout.csv", &tieout_manifest.outputs)?;
    let f = ingest::open_regular(&path)?;
    let mut rdr = csv::Reader::from_reader(ingest::HashingReader::new(
        std::io::BufReader::with_capacity(1 << 20, f),
    ));
    let header = rdr
        .headers()
        .map_err(|e| data_err(&path, 1, e.to_string()))?
        .clone();
    let mut rec = csv::StringRecord::new();
    let mut found = None;
    while rdr
        .read_record(&mut rec)
        .map_err(|e| data_err(&path, 0, e.to_string()))?
    {
        if rec
            .get(0)
            .is_some_and(|v| v.eq_ignore_ascii_case(id.trim()))
        {
            found = Some(rec.clone());
            break;
        }
    }
    // The rest of the file is hashed, not parsed.
    let mut rest = rdr.into_inner();
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| Fatal::io(&path, e))?;
    if !rest.is(expected) {
        return Err(publish::changed_since_written(
            &path,
            publish::Kind::Tieout,
            EXPLAIN_REFUSAL,
        ));
    }
    let rec =
        found.ok_or_else(|| Fatal::Input(format!("{}: no tie-out row '{id}'", path.display())))?;
    let get = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .and_then(|i| rec.get(i))
            .map(excel_unescape)
            .unwrap_or("")
    };
    // A line at a time: names and IDs from the files never break a line.
    let mut out = Lines::new();
    writeln!(
        out,
        "Tie-out row {} ({}{}): partner {} ({}), program {}, customer {}{}{}, {} {}",
        get("id"),
        get("class"),
        if get("reason").is_empty() {
            String::new()
        } else {
            format!(", {}", get("reason"))
        },
        get("partner_id"),
        get("partner_name"),
        if get("program_id").is_empty() {
            "(none)"
        } else {
            get("program_id")
        },
        if get("customer_id").is_empty() {
            "(none)"
        } else {
            get("customer_id")
        },
        if get("subscription_id").is_empty() {
            String::new()
        } else {
            format!(", subscription {}", get("subscription_id"))
        },
        crate::explain::billed(get("invoice_number"), get("product_id"), ", "),
        get("month"),
        get("currency"),
    );
    writeln!(
        out,
        "  expected {}  paid {}  difference {}  (porledger rate {}; Microsoft's earningRate {})",
        get("expected"),
        get("paid"),
        get("difference"),
        if get("porledger_rate").is_empty() {
            "-"
        } else {
            get("porledger_rate")
        },
        if get("microsoft_rate").is_empty() {
            "-"
        } else {
            get("microsoft_rate")
        },
    );
    writeln!(out, "  {}", get("explanation"));
    // Usage accruals (compensable units times a unit rate) are shown as
    // usage rows, not as billing lines: by the row's program where the run's
    // rules are still as the run read them, else by the line's source being
    // one of the run's usage files.
    let usage_program = rules_as_run(&run_manifest.json).map(|r| {
        r.programs
            .iter()
            .any(|p| p.id == get("program_id") && p.basis() == crate::config::Basis::Usage)
    });
    let usage_files: std::collections::HashSet<&str> = run_manifest.json["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["role"] == "usage")
        .filter_map(|e| e["path"].as_str())
        .collect();
    let is_usage =
        |source_file: &str| usage_program.unwrap_or_else(|| usage_files.contains(source_file));
    let wanted: std::collections::BTreeSet<u64> = get("ledger_lines")
        .split_whitespace()
        .filter_map(|l| l.parse().ok())
        .collect();
    if !wanted.is_empty() {
        writeln!(out);
        writeln!(out, "porledger ledger lines ({}):", wanted.len());
        let lpath = run.join("ledger.csv");
        let expected = publish::listed_digest(run, "ledger.csv", &run_manifest.outputs)?;
        let f = ingest::open_regular(&lpath)?;
        let mut rdr = LedgerReader::new(
            &lpath.display().to_string(),
            ingest::HashingReader::new(std::io::BufReader::with_capacity(1 << 20, f)),
        )?;
        while let Some(row) = rdr.next_row()? {
            if !wanted.contains(&row.line()) {
                continue;
            }
            if is_usage(row.get(C::SourceFile)) {
                writeln!(
                    out,
                    "  ledger.csv:{}  {}:{}  usage of {}  {} {}  workload {}",
                    row.line(),
                    row.get(C::SourceFile),
                    row.get(C::SourceLine),
                    row.get(C::ChargeDate),
                    row.get(C::ProgramId),
                    row.get(C::Association),
                    row.get(C::SubscriptionId),
                );
                writeln!(
                    out,
                    "      {} units x rate {} x share {} = {} {}",
                    row.get(C::BasisAmount),
                    row.get(C::Rate),
                    row.get(C::Share),
                    row.get(C::AccrualAmount),
                    row.get(C::Currency),
                );
                continue;
            }
            writeln!(
                out,
                "  ledger.csv:{}  {}:{}  charge {}  {} {}  subscription {}{}",
                row.line(),
                row.get(C::SourceFile),
                row.get(C::SourceLine),
                row.get(C::ChargeDate),
                row.get(C::ProgramId),
                row.get(C::Association),
                row.get(C::SubscriptionId),
                crate::explain::billed(row.get(C::InvoiceNumber), row.get(C::ProductId), "  "),
            );
            writeln!(
                out,
                "      {} x rate {} x share {} = {} {}",
                row.get(C::BasisAmount),
                row.get(C::Rate),
                row.get(C::Share),
                row.get(C::AccrualAmount),
                row.get(C::Currency),
            );
        }
        if !rdr.get_ref().is(expected) {
            return Err(publish::changed_since_written(
                &lpath,
                publish::Kind::Run,
                EXPLAIN_REFUSAL,
            ));
        }
    }
    let issued = get("issued_lines");
    if !issued.is_empty() {
        let grain = Grain {
            partner: crate::ingest::id_key(get("partner_id")),
            program: get("program_id"),
            customer: crate::ingest::id_key(get("customer_id")),
            subscription: crate::ingest::id_key(get("subscription_id")),
            month: get("month"),
            currency: get("currency"),
        };
        explain_issued(
            &mut out,
            tieout_dir,
            &tieout_manifest.outputs,
            history,
            issued,
            &grain,
            &is_usage,
        )?;
    }
    let refs = get("earnings_rows");
    if !refs.is_empty() {
        let list: Vec<&str> = refs.split("; ").collect();
        writeln!(out);
        writeln!(out, "earnings rows ({}):", list.len());
        for r in list {
            writeln!(out, "  {r}");
        }
    }
    Ok(out.into_string())
}

/// The grain of a tie-out row, IDs normalised (an empty subscription: all).
struct Grain<'a> {
    partner: String,
    program: &'a str,
    customer: String,
    subscription: String,
    month: &'a str,
    currency: &'a str,
}

/// The issued accruals of `refs` (`PERIOD vVERSION FILE:LINE; ...`, the
/// `issued_lines` of a row), read from the history again: one pass over the
/// row's accrual month of the versions named.
fn explain_issued(
    out: &mut Lines,
    tieout_dir: &Path,
    listed: &HashMap<String, FileDigest>,
    history: Option<&Path>,
    refs: &str,
    grain: &Grain<'_>,
    is_usage: &dyn Fn(&str) -> bool,
) -> Result<(), Fatal> {
    use std::collections::BTreeSet;
    let mut wanted: BTreeSet<(String, u32, String, u64)> = BTreeSet::new();
    for r in refs.split("; ") {
        let parsed = r.split_once(' ').and_then(|(period, rest)| {
            let (v, rest) = rest.split_once(' ')?;
            let version: u32 = v.strip_prefix('v')?.parse().ok()?;
            let (file, line) = rest.rsplit_once(':')?;
            Some((
                period.to_string(),
                version,
                file.to_string(),
                line.parse().ok()?,
            ))
        });
        wanted.insert(parsed.ok_or_else(|| {
            Fatal::Input(format!(
                "{}: issued line '{r}' is not PERIOD vVERSION FILE:LINE",
                tieout_dir.join("tieout.csv").display()
            ))
        })?);
    }
    // What the tie-out recorded of its history: the file and, per version
    // used, the close it read.
    let json_path = tieout_dir.join("tieout.json");
    let bytes = publish::read_listed(
        tieout_dir,
        publish::Kind::Tieout,
        "tieout.json",
        listed,
        EXPLAIN_REFUSAL,
    )?;
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| data_err(&json_path, 0, format!("not a porledger tie-out: {e}")))?;
    let recorded = &json["history"];
    let path = match (history, recorded["path"].as_str()) {
        (Some(p), _) => p.to_path_buf(),
        // A tie-out records the history's absolute path; an earlier one the
        // path as given, taken here from the tie-out's directory (never
        // from wherever explain is run).
        (None, Some(p)) => tieout_dir.join(p),
        (None, None) => {
            return Err(Fatal::Input(format!(
                "{} names no history: give the tie-out's --history to explain its issued lines",
                json_path.display()
            )))
        }
    };
    let Some(h) = History::open_read(&path)? else {
        return Err(Fatal::Input(format!(
            "--history {}: no porledger history there; give the tie-out's --history",
            path.display()
        )));
    };
    same_closes(&h, &path, recorded, &json_path, &wanted)?;
    let versions: Vec<(String, u32)> = wanted
        .iter()
        .map(|(p, v, _, _)| (p.clone(), *v))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // Each accrual's two lines, by (period, version, file, line).
    type Key = (String, u32, String, u64);
    let mut lines: Vec<(Key, [String; 2])> = Vec::new();
    h.issued_accruals(
        &versions,
        (grain.month, grain.month),
        |r| -> Result<(), Fatal> {
            let month_ok = if r.accrual_month.is_empty() {
                parse_date(r.charge_date)
                    .map(|d| Month::of(d).to_string() == grain.month)
                    .unwrap_or(false)
            } else {
                r.accrual_month == grain.month
            };
            let key = (
                r.period.to_string(),
                r.version,
                r.source_file.to_string(),
                r.source_line,
            );
            if !month_ok
                || r.program_id != grain.program
                || !r.currency.eq_ignore_ascii_case(grain.currency)
                || crate::ingest::id_key(r.partner_id) != grain.partner
                || crate::ingest::id_key(r.customer_id) != grain.customer
                || (!grain.subscription.is_empty()
                    && crate::ingest::id_key(r.subscription_id) != grain.subscription)
                || !wanted.contains(&key)
            {
                return Ok(());
            }
            let usage = is_usage(r.source_file);
            let first = format!(
                "  {} v{}  {}:{}  {} {}  {} {}  {} {}",
                r.period,
                r.version,
                r.source_file,
                r.source_line,
                if usage { "usage of" } else { "charge" },
                r.charge_date,
                r.program_id,
                r.association,
                if usage { "workload" } else { "subscription" },
                r.subscription_id,
            );
            let second = format!(
                "      {} {}x rate {} x share {} = {} {}",
                r.basis,
                if usage { "units " } else { "" },
                r.rate,
                r.share,
                r.amount,
                r.currency,
            );
            lines.push((key, [first, second]));
            Ok(())
        },
    )?;
    lines.sort();
    writeln!(out);
    writeln!(
        out,
        "issued accruals of closed periods ({}; {}):",
        lines.len(),
        path.display()
    );
    for (_, [first, second]) in &lines {
        writeln!(out, "{first}");
        writeln!(out, "{second}");
    }
    let found = lines.iter().map(|(k, _)| k).collect::<BTreeSet<_>>().len();
    if found < wanted.len() {
        writeln!(
            out,
            "  ({} of the {} issued lines are not in this history: was the tie-out made with another one?)",
            wanted.len() - found,
            wanted.len()
        );
    }
    Ok(())
}

/// Refuses a history whose close of a version the row names is not the one
/// the tie-out read (`recorded`: the `history` of its tieout.json, which
/// gives each version's manifest SHA-256): another history of the same name,
/// or one built again since, whose accruals would be shown under the row's
/// amounts. A tie-out of an earlier porledger recorded no SHA-256: its
/// versions are not checked.
fn same_closes(
    h: &History,
    path: &Path,
    recorded: &serde_json::Value,
    json_path: &Path,
    wanted: &std::collections::BTreeSet<(String, u32, String, u64)>,
) -> Result<(), Fatal> {
    let versions: std::collections::BTreeSet<(&str, u32)> =
        wanted.iter().map(|(p, v, _, _)| (p.as_str(), *v)).collect();
    let listed = recorded["versions"].as_array();
    for (period, version) in versions {
        let entry = listed.into_iter().flatten().find(|v| {
            v["period"].as_str() == Some(period) && v["version"].as_u64() == Some(version.into())
        });
        let Some(entry) = entry else {
            return Err(Fatal::Input(format!(
                "{}: the tie-out row names {period} v{version}, which the tie-out's history does \
                 not list: the tie-out was changed; run `porledger tieout` again",
                json_path.display()
            )));
        };
        let Some(want) = entry["manifest_sha256"].as_str() else {
            continue;
        };
        let got = h
            .closes(Some(period))?
            .into_iter()
            .find(|c| c.version == version)
            .map(|c| c.manifest_sha256);
        if got.as_deref() != Some(want) {
            return Err(Fatal::Input(format!(
                "--history {}: not the history the tie-out read: its close of {period} v{version} \
                 {} (the tie-out read the close of the run whose manifest.json has SHA-256 \
                 {want}, {}); explain refuses to show another history's accruals under the \
                 row: give the tie-out's history with --history",
                path.display(),
                match &got {
                    Some(sha) => format!("is of the run whose manifest.json has SHA-256 {sha}"),
                    None => "is not in it".to_string(),
                },
                json_path.display()
            )));
        }
    }
    Ok(())
}

/// Today's date in UTC, from the system clock (the one place tieout reads it).
fn today_utc() -> chrono::NaiveDate {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_tieout_dir_is_beside_the_run_or_asked_for() {
        assert_eq!(
            default_tieout_dir(Path::new("out/2026-10")).unwrap(),
            Path::new("out/2026-10-tieout")
        );
        let fits = "m".repeat(255 - 7);
        assert!(default_tieout_dir(Path::new(&fits)).is_ok());
        let long = "m".repeat(255 - 6);
        let e = default_tieout_dir(Path::new(&long))
            .unwrap_err()
            .to_string();
        assert!(e.contains("give --tieout-out"), "{e}");
        assert!(default_tieout_dir(Path::new("..")).is_err());
    }
    use crate::history::{AccrualRec, CloseRecord, HistoryError};

    fn row(month: &str, line: u64, amount: &str) -> Result<AccrualRec, ()> {
        Ok(AccrualRec {
            partner_id: "P1".into(),
            customer_id: "C1".into(),
            program_id: "prog".into(),
            association: "DPOR".into(),
            subscription_id: "S1".into(),
            charge_date: format!("{month}-01"),
            accrual_month: month.into(),
            source_file: "b.csv".into(),
            source_line: line,
            basis: "100".into(),
            rate: "0.05".into(),
            share: "1".into(),
            amount: amount.into(),
            currency: "EUR".into(),
            ..AccrualRec::default()
        })
    }

    fn close(
        h: &mut History,
        period: &str,
        restates: Option<u32>,
        rows: Vec<Result<AccrualRec, ()>>,
    ) {
        // The run read the history, as `run --history` does.
        let run = h.run_history(period).unwrap();
        assert_eq!(run.restates, restates);
        let run = Some(run);
        let rec = CloseRecord {
            period: period.into(),
            manifest_sha256: "ab".into(),
            tool_version: "0".into(),
            rounding: "half-up".into(),
            run,
            ..CloseRecord::default()
        };
        assert!(h.close(&rec, rows, || {}).is_ok());
    }

    /// The issued accruals the tie-out reads: only the versions asked for,
    /// only the accrual months asked for, in recorded order, borrowed.
    #[test]
    fn issued_accruals_stream_the_versions_and_months_asked_for() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, std::time::Duration::from_secs(1)).unwrap();
        close(
            &mut h,
            "2026-10",
            None,
            vec![row("2026-10", 2, "5"), row("2026-11", 3, "1")],
        );
        close(
            &mut h,
            "2026-10",
            Some(1),
            vec![row("2026-10", 2, "6"), row("2026-11", 3, "2")],
        );
        close(
            &mut h,
            "2026-11",
            None,
            vec![row("2026-10", 9, "-3"), row("2026-12", 4, "7")],
        );
        drop(h);
        let h = History::open_read(&p).unwrap().unwrap();
        let read = |versions: &[(&str, u32)], months: (&str, &str)| {
            let versions: Vec<(String, u32)> =
                versions.iter().map(|(p, v)| (p.to_string(), *v)).collect();
            let mut got = Vec::new();
            h.issued_accruals(&versions, months, |r| -> Result<(), HistoryError> {
                got.push(format!(
                    "{} v{} {} {}:{} {}",
                    r.period, r.version, r.accrual_month, r.source_file, r.source_line, r.amount
                ));
                Ok(())
            })
            .unwrap();
            got
        };
        assert_eq!(
            read(&[("2026-10", 2), ("2026-11", 1)], ("2026-10", "2026-11")),
            vec![
                "2026-10 v2 2026-10 b.csv:2 6",
                "2026-10 v2 2026-11 b.csv:3 2",
                "2026-11 v1 2026-10 b.csv:9 -3",
            ]
        );
        assert_eq!(
            read(&[("2026-10", 1)], ("2026-11", "2026-12")),
            vec!["2026-10 v1 2026-11 b.csv:3 1"]
        );
        assert!(read(&[], ("2026-01", "2026-12")).is_empty());
        // A version the history does not hold is an error, not nothing.
        let missing = h.issued_accruals(
            &[("2026-10".to_string(), 3)],
            ("2026-10", "2026-10"),
            |_| -> Result<(), HistoryError> { Ok(()) },
        );
        let e = missing.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            e.contains("period 2026-10 version 3 is not in this history"),
            "{e}"
        );
    }

    /// Each version is read as its own range of rows, whatever the sizes of
    /// the closes around it (none, one, many rows); rows that are not where
    /// a close put them, or fewer than it recorded, refuse the history.
    #[test]
    fn issued_accruals_read_each_version_as_its_range_and_refuse_a_damaged_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.db");
        let mut h = History::open_write(&p, std::time::Duration::from_secs(1)).unwrap();
        let sizes = [3usize, 0, 1, 17, 2, 0, 64, 1];
        for (v, n) in sizes.iter().enumerate() {
            let rows = (0..*n)
                .map(|i| row("2026-10", (v * 100 + i) as u64, "1"))
                .collect();
            close(&mut h, "2026-10", (v > 0).then_some(v as u32), rows);
        }
        drop(h);
        let read = |p: &std::path::Path, versions: &[u32]| {
            let h = History::open_read(p).unwrap().unwrap();
            let versions: Vec<(String, u32)> = versions
                .iter()
                .map(|v| ("2026-10".to_string(), *v))
                .collect();
            let mut got = Vec::new();
            h.issued_accruals(&versions, ("2026-10", "2026-10"), |r| {
                got.push((r.version, r.source_line));
                Ok::<(), HistoryError>(())
            })
            .map(|()| got)
            .map_err(|e| e.to_string())
        };
        for (v, n) in sizes.iter().enumerate() {
            let version = v as u32 + 1;
            let want: Vec<(u32, u64)> = (0..*n).map(|i| (version, (v * 100 + i) as u64)).collect();
            assert_eq!(read(&p, &[version]).unwrap(), want, "version {version}");
        }
        let all: Vec<u32> = (1..=sizes.len() as u32).collect();
        assert_eq!(read(&p, &all).unwrap().len(), sizes.iter().sum::<usize>());
        // The rows of version 4 moved to version 7, after its own (ids are
        // versions here).
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute(
            "UPDATE accrual_blocks SET close_id = 7, first = 1000 WHERE close_id = 4",
            [],
        )
        .unwrap();
        let e = read(&p, &[4]).unwrap_err();
        assert!(
            e.contains("period 2026-10 version 4") && e.contains("the history is damaged"),
            "{e}"
        );
        // Versions whose rows are where the close put them still read.
        assert_eq!(read(&p, &[3]).unwrap().len(), 1);
    }
}
