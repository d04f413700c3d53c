//! `porledger tieout`: a finished run against Microsoft's earnings export.
//!
//! Glue only: reads the run (summary.json, manifest.json, ledger.csv and
//! not-eligible.csv, by column name), the rules and the earnings files
//! ([`crate::ingest::earnings`]), feeds the pure [`crate::tieout::TieOut`],
//! and publishes its [`crate::tieout::Report`] through
//! [`crate::render::publish::Staging`] like a run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

use crate::cli::TieoutArgs;
use crate::cmd::Finish;
use crate::config::earnings::EarningsLabels;
use crate::config::{parse_rules, Rules};
use crate::dates::{parse_date, Month};
use crate::error::Fatal;
use crate::ingest;
use crate::ingest::earnings::{read_earnings, EarningsRead};
use crate::ledger::{LedgerColumn as C, LedgerReader};
use crate::money::{Currency, RoundingMode};
use crate::render::pdf::tieout::TieoutPage;
use crate::render::pdf::Renderer;
use crate::render::publish::{self, Staging};
use crate::render::tieout as rt;
use crate::render::{excel_unescape, sanitize_file_name};
use crate::tieout::{Accrual, Earning, Report, TieOut, TieRow, TieSettings};

/// The run a tie-out reads.
pub struct RunInfo {
    pub period: String,
    pub rounding: RoundingMode,
    pub partner_names: Vec<(String, String)>,
    pub rules_path: Option<PathBuf>,
    pub rules_sha256: Option<String>,
}

fn data_err(file: &Path, line: u64, message: String) -> Fatal {
    Fatal::Data {
        file: file.display().to_string(),
        line,
        column: None,
        message,
    }
}

/// Reads summary.json and manifest.json of a finished run.
pub fn run_info(out: &Path) -> Result<RunInfo, Fatal> {
    let summary_path = out.join("summary.json");
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&summary_path).map_err(|e| Fatal::io(&summary_path, e))?,
    )
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
    let manifest_path = out.join("manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&manifest_path).map_err(|e| Fatal::io(&manifest_path, e))?,
    )
    .map_err(|e| data_err(&manifest_path, 0, format!("not a porledger manifest: {e}")))?;
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
    })
}

/// The rules: `--rules`, or the run's own (unchanged) rules file.
fn load_rules(args: &TieoutArgs, info: &RunInfo) -> Result<Rules, Fatal> {
    let path = match (&args.rules, &info.rules_path) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) => {
            let digest = ingest::sha256_file(p).map_err(|e| {
                Fatal::Input(format!(
                    "the run's rules file {} cannot be read ({e}); give it with --rules",
                    p.display()
                ))
            })?;
            if info.rules_sha256.as_deref() != Some(digest.sha256.as_str()) {
                return Err(Fatal::Input(format!(
                    "the run's rules file {} changed since the run (its SHA-256 differs from \
                     manifest.json): give the rules to tie out with --rules",
                    p.display()
                )));
            }
            p.clone()
        }
        (None, None) => {
            return Err(Fatal::Input(
                "the run's manifest.json names no rules file: give it with --rules".into(),
            ))
        }
    };
    let text = ingest::read_text_limited(&path, ingest::limits::RULES, "rules")?;
    parse_rules(&text).map_err(|e| Fatal::Config {
        file: path.display().to_string(),
        message: e.to_string(),
    })
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
/// the ledger has that column, else the month of `charge_date`.
fn read_ledger(out: &Path, tie: &mut TieOut<'_>) -> Result<(), Fatal> {
    let path = out.join("ledger.csv");
    if !path.exists() && out.join("ledger.parquet").exists() {
        return Err(data_err(
            &path,
            0,
            "this run wrote ledger.parquet; tieout reads ledger.csv: run again with \
             --ledger-format csv"
                .into(),
        ));
    }
    let f = ingest::open_regular(&path)?;
    let shown = path.display().to_string();
    let mut rdr = LedgerReader::new(&shown, std::io::BufReader::with_capacity(1 << 20, f))?;
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
            month,
            currency,
            amount,
            rate,
            ledger_line: row.line(),
        })?;
    }
    Ok(())
}

fn parse_month(s: &str) -> Option<Month> {
    let (y, m) = s.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    (y > 0 && (1..=12).contains(&m) && s.len() == 7).then(|| Month::from_ym(y, m))
}

/// Feeds the not-eligible rows of the customers the earnings name.
fn read_not_eligible(out: &Path, tie: &mut TieOut<'_>) -> Result<(), Fatal> {
    let path = out.join("not-eligible.csv");
    let Ok(f) = ingest::open_regular(&path) else {
        // Older or partial runs: no closest reason from billing lines.
        return Ok(());
    };
    let mut rdr = csv::Reader::from_reader(std::io::BufReader::with_capacity(1 << 20, f));
    let header = rdr
        .headers()
        .map_err(|e| data_err(&path, 1, e.to_string()))?
        .clone();
    let pos = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Fatal::Data {
                file: path.display().to_string(),
                line: 1,
                column: Some(name.to_string()),
                message: "not-eligible.csv has no such column".into(),
            })
    };
    let (cust, sub, date, reason, detail, file, line) = (
        pos("customer_id")?,
        pos("subscription_id")?,
        pos("charge_date")?,
        pos("reason")?,
        pos("detail")?,
        pos("source_file")?,
        pos("source_line")?,
    );
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
    Ok(())
}

/// Reads the earnings files into `tie`.
fn read_earnings_into(args: &TieoutArgs, tie: &mut TieOut<'_>) -> Result<EarningsRead, Fatal> {
    let files = ingest::discover(&args.earnings, "--earnings")?;
    let mut failed = None;
    let read = read_earnings(&files, &mut |e| {
        if failed.is_some() {
            return;
        }
        let r = tie.add_earning(&Earning {
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
            month: Month::of(e.date),
            currency: e.currency,
            amount: e.amount,
            rate: e.rate,
            reason_code: e.reason_code,
        });
        if let Err(err) = r {
            failed = Some(err);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(read)
}

pub fn tieout(args: &TieoutArgs) -> Result<Finish, Fatal> {
    let tolerance = parse_tolerance(&args.tolerance)?;
    let info = run_info(&args.out)?;
    let rules = load_rules(args, &info)?;
    let renderer = if args.no_pdf {
        None
    } else {
        Some(Renderer::load(args.template.as_deref(), &args.locale)?)
    };
    let target = match &args.tieout_out {
        Some(d) => d.clone(),
        None => default_tieout_dir(&args.out)?,
    };
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
    // The two sides are read at once, each into its own accumulator.
    let mut ledger_side = TieOut::new(&rules, settings);
    let (read, ledger) = rayon::join(
        || read_earnings_into(args, &mut tie),
        || read_ledger(&args.out, &mut ledger_side),
    );
    let read = read?;
    ledger?;
    tie.add_accruals_of(ledger_side)?;
    read_not_eligible(&args.out, &mut tie)?;
    let report = tie.finish()?;
    let accounting = rt::Accounting::of(&read, &report);
    if !accounting.balanced {
        return Err(Fatal::Input(
            "internal error: the earnings row accounting does not add up; nothing was published"
                .into(),
        ));
    }
    let names: Vec<String> = read.files.iter().map(|(n, _)| n.clone()).collect();
    let staging = Staging::new(&target)?;
    let dir = staging.dir.clone();
    let files = &staging.files;
    let head = rt::JsonHead {
        run: &args.out.display().to_string(),
        period: &info.period,
        as_of: as_of.to_string(),
        tolerance,
        read: &read,
    };
    rt::write_tieout_json(files, &dir, &head, &report)?;
    rt::write_rejects(files, &dir.join("rejects.csv"), &read)?;
    write_partners(
        &staging,
        &report,
        &names,
        &info,
        renderer.as_ref(),
        as_of,
        tolerance,
    )?;
    let manifest = serde_json::json!({
        "tool": "porledger",
        "version": env!("CARGO_PKG_VERSION"),
        "kind": "tieout",
        "run": args.out.display().to_string(),
        "outputs": publish::hash_outputs(&dir, files)?,
    });
    publish::write_json(files, &dir.join("manifest.json"), &manifest)?;
    staging.commit()?;
    if !args.quiet {
        eprintln!("{}", console_summary(&report, &accounting, &target));
    }
    Ok(if report.differences > 0 || accounting.rejected > 0 {
        Finish::Differences
    } else {
        Finish::Clean
    })
}

fn write_partners(
    staging: &Staging,
    report: &Report,
    names: &[String],
    info: &RunInfo,
    renderer: Option<&Renderer>,
    as_of: chrono::NaiveDate,
    tolerance: Decimal,
) -> Result<(), Fatal> {
    let mut by_partner: BTreeMap<&str, Vec<&TieRow>> = BTreeMap::new();
    for r in &report.rows {
        by_partner.entry(&r.partner_id).or_default().push(r);
    }
    let partners = staging.dir.join("partners");
    if !by_partner.is_empty() {
        std::fs::create_dir(&partners).map_err(|e| Fatal::io(&partners, e))?;
    }
    for id in by_partner.keys() {
        let dir = partners.join(sanitize_file_name(id));
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(|e| Fatal::io(&dir, e))?;
        }
    }
    // tieout.csv and every partner's tieout.csv, each row formatted once.
    let partner_file = |id: &str| partners.join(sanitize_file_name(id)).join("tieout.csv");
    rt::write_tieout_csvs(
        &staging.files,
        &staging.dir,
        report,
        names,
        Some(&partner_file),
    )?;
    let none = BTreeMap::new();
    for (id, rows) in by_partner {
        let dir = partners.join(sanitize_file_name(id));
        if let Some(r) = renderer {
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
                rows: &rows,
            };
            let pdf = r.tieout_statement(&page);
            publish::write_file(&staging.files, &dir.join("tieout.pdf"), &pdf)?;
        }
    }
    Ok(())
}

fn console_summary(r: &Report, a: &rt::Accounting, target: &Path) -> String {
    let mut s = format!(
        "earnings: {} rows read = {} duplicate earningId + {} matched + {} unmatched + {} \
         adjustments + {} rejected\n",
        a.rows_read, a.duplicates, a.matched, a.unmatched, a.adjustments, a.rejected
    );
    let classes: Vec<String> = r
        .classes
        .iter()
        .map(|(c, n)| format!("{} {n}", c.as_str()))
        .collect();
    s.push_str(&format!(
        "tie-out: {} rows ({}); {} differ\n",
        r.rows.len(),
        classes.join(", "),
        r.differences
    ));
    for (p, by) in &r.partner_totals {
        for (c, t) in by {
            s.push_str(&format!(
                "  {p} {c}: expected {} paid {} adjustments {} difference {}\n",
                t.expected, t.paid, t.adjustments, t.difference
            ));
        }
    }
    s.push_str(&format!("published: {}", target.display()));
    s
}

/// `porledger explain --tieout-row ROW`: the row of `tieout_dir/tieout.csv`,
/// then every ledger line behind it (with its billing source) and the
/// earnings rows behind it.
pub fn explain_row(run: &Path, tieout_dir: &Path, id: &str) -> Result<String, Fatal> {
    use std::fmt::Write as _;
    let path = tieout_dir.join("tieout.csv");
    let f = ingest::open_regular(&path)?;
    let mut rdr = csv::Reader::from_reader(std::io::BufReader::new(f));
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
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Tie-out row {} ({}{}): partner {} ({}), program {}, customer {}{}, {} {}",
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
        get("month"),
        get("currency"),
    );
    let _ =
        writeln!(
        out,
        "  expected {}  paid {}  difference {}  (porledger rate {}; Microsoft's earningRate {})",
        get("expected"),
        get("paid"),
        get("difference"),
        if get("porledger_rate").is_empty() { "-" } else { get("porledger_rate") },
        if get("microsoft_rate").is_empty() { "-" } else { get("microsoft_rate") },
    );
    let _ = writeln!(out, "  {}", get("explanation"));
    let wanted: std::collections::BTreeSet<u64> = get("ledger_lines")
        .split_whitespace()
        .filter_map(|l| l.parse().ok())
        .collect();
    if !wanted.is_empty() {
        let _ = writeln!(out, "\nporledger ledger lines ({}):", wanted.len());
        let lpath = run.join("ledger.csv");
        let f = ingest::open_regular(&lpath)?;
        let mut rdr = LedgerReader::new(&lpath.display().to_string(), std::io::BufReader::new(f))?;
        while let Some(row) = rdr.next_row()? {
            if !wanted.contains(&row.line()) {
                continue;
            }
            let _ = writeln!(
                out,
                "  ledger.csv:{}  {}:{}  charge {}  {} {}  subscription {}\n      {} x rate {} x share {} = {} {}",
                row.line(),
                row.get(C::SourceFile),
                row.get(C::SourceLine),
                row.get(C::ChargeDate),
                row.get(C::ProgramId),
                row.get(C::Association),
                row.get(C::SubscriptionId),
                row.get(C::BasisAmount),
                row.get(C::Rate),
                row.get(C::Share),
                row.get(C::AccrualAmount),
                row.get(C::Currency),
            );
        }
    }
    let refs = get("earnings_rows");
    if !refs.is_empty() {
        let list: Vec<&str> = refs.split("; ").collect();
        let _ = writeln!(out, "\nearnings rows ({}):", list.len());
        for r in list {
            let _ = writeln!(out, "  {r}");
        }
    }
    Ok(out)
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
