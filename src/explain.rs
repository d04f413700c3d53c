//! `porledger explain`: how each amount of a finished run came about, from the
//! run's own outputs (ledger.csv, summary.json, manifest.json and the statement),
//! so that a finance reviewer can check a statement line by hand.
//!
//! Reading the files is done by [`load`]; [`render_explanation`] is pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use rust_decimal::Decimal;

use crate::error::Fatal;
use crate::ledger::{LedgerColumn as C, LedgerReader};
use crate::money::{format_exact, round_money, Currency, RoundingMode};
use crate::render::excel_unescape;

/// One ledger row, as written by `run` (read by [`crate::ledger::LedgerReader`]).
pub use crate::ledger::LedgerRecord as LedgerRow;

/// What to explain.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub partner: String,
    pub customer: Option<String>,
    pub program: Option<String>,
}

/// Everything the explanation needs, read from a run's output directory.
pub struct RunRecord {
    pub period: String,
    pub rounding: RoundingMode,
    pub partner_name: String,
    pub rows: Vec<LedgerRow>,
    /// (customer, program, currency) -> amount printed on the partner statement.
    pub statement: BTreeMap<(String, String, String), String>,
    /// (customer, program) -> how tiered rates were chosen (`tier_rate` rows).
    pub tiers: BTreeMap<(String, String), Vec<String>>,
    /// designation line -> the designation row's text, when the designations
    /// file named in the manifest is still there unchanged.
    pub designations: BTreeMap<String, String>,
    pub designations_file: String,
}

fn data_err(file: &Path, message: String) -> Fatal {
    Fatal::Data {
        file: file.display().to_string(),
        line: 0,
        column: None,
        message,
    }
}

/// Reads what [`render_explanation`] needs from `out`.
pub fn load(out: &Path, filter: &Filter) -> Result<RunRecord, Fatal> {
    let summary_path = out.join("summary.json");
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&summary_path).map_err(|e| Fatal::io(&summary_path, e))?,
    )
    .map_err(|e| data_err(&summary_path, format!("not a porledger summary: {e}")))?;
    let rounding: RoundingMode = summary["rounding"]
        .as_str()
        .unwrap_or("")
        .parse()
        .map_err(|e: String| data_err(&summary_path, e))?;
    let period = summary["period"].as_str().unwrap_or("").to_string();
    let partner_name = summary["summary"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["partner_id"] == filter.partner.as_str())
        .and_then(|r| r["partner_name"].as_str())
        .unwrap_or("")
        .to_string();

    let ledger_path = out.join("ledger.csv");
    if !ledger_path.exists() && out.join("ledger.parquet").exists() {
        return Err(data_err(
            &ledger_path,
            "this run wrote ledger.parquet (--ledger-format parquet); explain reads \
             ledger.csv: run again with --ledger-format csv"
                .to_string(),
        ));
    }
    // By column name; IDs come back unescaped (`-P1` is stored as `'-P1`).
    let mut rdr = LedgerReader::open(&ledger_path)?;
    let mut rows = Vec::new();
    while let Some(row) = rdr.next_row()? {
        if row.get(C::PartnerId) != filter.partner
            || filter
                .customer
                .as_ref()
                .is_some_and(|c| !c.eq_ignore_ascii_case(row.get(C::CustomerId)))
            || filter
                .program
                .as_ref()
                .is_some_and(|p| p != row.get(C::ProgramId))
        {
            continue;
        }
        rows.push(row.record()?);
    }

    let mut statement = BTreeMap::new();
    let mut tiers: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let st_path = out
        .join("partners")
        .join(crate::render::sanitize_file_name(&filter.partner))
        .join("statement.csv");
    if let Ok(text) = std::fs::read(&st_path) {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&text[..]);
        for rec in rdr.records().flatten() {
            // Keys as written, like the ledger's (the statement escapes them too).
            let g = |i: usize| excel_unescape(rec.get(i).unwrap_or("")).to_string();
            if rec.get(0) == Some("tier_rate") && rec.get(1) != Some("customer_id") {
                tiers.entry((g(1), g(2))).or_default().push(format!(
                    "product {}, month {}: workloads {}; rate {}: {}",
                    g(3),
                    g(4),
                    g(5),
                    g(7),
                    g(8)
                ));
            } else if rec.len() == 10 && rec.get(0) != Some("customer_id") {
                statement.insert((g(0), g(2), g(4)), g(9));
            }
        }
    }

    let mut designations = BTreeMap::new();
    let mut designations_file = String::new();
    let manifest_path = out.join("manifest.json");
    if let Ok(bytes) = std::fs::read(&manifest_path) {
        let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if let Some(d) = m["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["role"] == "designations")
        {
            designations_file = d["path"].as_str().unwrap_or("").to_string();
            if let Ok(digest) = crate::ingest::sha256_file(Path::new(&designations_file)) {
                if d["sha256"] == digest.sha256.as_str() {
                    let text = crate::ingest::read_text(Path::new(&designations_file))?;
                    for (i, l) in text.lines().enumerate() {
                        designations.insert((i + 1).to_string(), l.trim_end().to_string());
                    }
                }
            }
        }
    }
    Ok(RunRecord {
        period,
        rounding,
        partner_name,
        rows,
        statement,
        tiers,
        designations,
        designations_file,
    })
}

/// The explanation as text: every ledger line, grouped by statement line, with
/// the sum of exact amounts and the rounding step.
pub fn render_explanation(r: &RunRecord, filter: &Filter) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Partner {} ({}), period {}, rounding {} to the currency's minor unit",
        filter.partner,
        if r.partner_name.is_empty() {
            "no name in the designations"
        } else {
            &r.partner_name
        },
        r.period,
        r.rounding.as_str()
    );
    if r.rows.is_empty() {
        let _ = writeln!(
            s,
            "\nno ledger line matches: this partner earned nothing here in the period"
        );
        return s;
    }
    let mut groups: BTreeMap<(&str, &str, Currency), Vec<&LedgerRow>> = BTreeMap::new();
    for row in &r.rows {
        groups
            .entry((&row.customer_id, &row.program_id, row.currency))
            .or_default()
            .push(row);
    }
    let mut totals: BTreeMap<Currency, Decimal> = BTreeMap::new();
    for ((customer, program, currency), rows) in &groups {
        let _ = writeln!(s, "\ncustomer {customer}, program {program}, {currency}");
        for t in r
            .tiers
            .get(&(customer.to_string(), program.to_string()))
            .into_iter()
            .flatten()
        {
            let _ = writeln!(s, "  attainment tier: {t}");
        }
        let mut sum = Decimal::ZERO;
        for row in rows {
            let designation = match row.designation_line.as_str() {
                "" => format!("{} from the billing line", row.association),
                l => match r.designations.get(l) {
                    Some(text) => format!(
                        "{} by {}:{l} [{text}]",
                        row.association, r.designations_file
                    ),
                    None => format!("{} by {}:{l}", row.association, r.designations_file),
                },
            };
            let days = if row.credited_days.is_empty() || row.credited_days == row.charge_days {
                String::new()
            } else {
                format!(
                    ", prorated {} of {} days",
                    row.credited_days, row.charge_days
                )
            };
            let _ = writeln!(
                s,
                "  {}:{}  charge {}  subscription {}  {designation}\n      {} x rate {} x share {} = {}{days}",
                row.source_file,
                row.source_line,
                row.charge_date,
                row.subscription_id,
                format_exact(row.basis, row.currency),
                row.rate,
                row.share,
                format_exact(row.amount, row.currency),
            );
            sum += row.amount;
        }
        let rounded = round_money(sum, *currency, r.rounding);
        *totals.entry(*currency).or_default() += rounded;
        let check = match r.statement.get(&(
            customer.to_string(),
            program.to_string(),
            currency.to_string(),
        )) {
            Some(v) if *v == rounded.to_string() => "matches the statement".to_string(),
            Some(v) => format!("STATEMENT SAYS {v}: the outputs were changed after the run"),
            None if filter.customer.is_some() || filter.program.is_some() => {
                "statement line".into()
            }
            None => "statement not found".into(),
        };
        let _ = writeln!(
            s,
            "  sum of {} exact amounts {} -> rounded {} {} = {rounded} ({check})",
            rows.len(),
            format_exact(sum, *currency),
            r.rounding.as_str(),
            currency
        );
    }
    for (c, t) in totals {
        let _ = writeln!(s, "\ntotal {c}: {t} (the sum of the rounded lines above)");
    }
    s
}
