//! `porledger explain`: how each amount of a finished run came about, on stdout.
//!
//! Reads the run's own outputs (summary.json, ledger.csv by column name, the
//! partner statement, manifest.json and the designations file it names, when
//! unchanged) into an [`explain::RunRecord`](crate::explain::RunRecord); the
//! explanation itself is pure ([`crate::explain::render_explanation`]).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::cli::ExplainArgs;
use crate::cmd::{stdout_result, Finish};
use crate::error::Fatal;
use crate::explain::{render_explanation, render_issued, Filter, IssuedAccrual, RunRecord};
use crate::ledger::{LedgerColumn as C, LedgerReader};
use crate::money::RoundingMode;
use crate::render::excel_unescape;

pub fn explain(args: &ExplainArgs) -> Result<Finish, Fatal> {
    if let Some(row) = &args.tieout_row {
        let dir = match &args.tieout_out {
            Some(d) => d.clone(),
            None => crate::cmd::tieout::default_tieout_dir(&args.out)?,
        };
        let text = crate::cmd::tieout::explain_row(&args.out, &dir, row, args.history.as_deref())?;
        stdout_result(
            std::io::stdout()
                .lock()
                .write_all(crate::console::shown(&text).as_bytes()),
        )?;
        return Ok(Finish::Clean);
    }
    let mut filter = Filter {
        partner: args.partner.clone().unwrap_or_default(),
        customer: args.customer.clone(),
        program: args.program.clone(),
    };
    let mut record = load(&args.out, &mut filter)?;
    let history = match &args.history {
        Some(path) => Some((path, open_history(path)?)),
        None => None,
    };
    // The partner as the history spells it (it may have earned nothing in
    // this run, or be spelled otherwise there), and its name where the run
    // has none.
    let mut issued_to = filter.partner.clone();
    if let Some((_, h)) = &history {
        if let Some((id, name)) = h.partner(&filter.partner)? {
            if record.partner_name.is_empty() {
                record.partner_name = name;
            }
            if record.rows.is_empty() {
                filter.partner = id.clone();
            }
            issued_to = id;
        }
    }
    let mut text = render_explanation(&record, &filter);
    if let Some((path, h)) = &history {
        text.push_str(&issued(path, h, &record, &filter, &issued_to)?);
    }
    stdout_result(
        std::io::stdout()
            .lock()
            .write_all(crate::console::shown(&text).as_bytes()),
    )?;
    Ok(Finish::Clean)
}

/// `--history`: the issued version this run restates (from its manifest), or
/// the latest issued version of its period, against this run.
fn issued(
    path: &Path,
    h: &crate::history::History,
    record: &RunRecord,
    filter: &Filter,
    partner: &str,
) -> Result<String, Fatal> {
    let version = match record.restates {
        Some(v) => v,
        None => match h.latest(&record.period)? {
            Some(v) => v,
            None => {
                let mut s = crate::console::Lines::new();
                writeln!(s);
                writeln!(
                    s,
                    "Period {} is not closed in {}: nothing issued to compare with.",
                    record.period,
                    path.display()
                );
                return Ok(s.into_string());
            }
        },
    };
    let mut rows = Vec::new();
    for a in h.accruals(&record.period, version, partner)? {
        if filter
            .customer
            .as_ref()
            .is_some_and(|c| !same_id(c, &a.customer_id))
            || filter.program.as_ref().is_some_and(|p| *p != a.program_id)
        {
            continue;
        }
        let bad = |what: &str, value: &str| {
            Fatal::Input(format!(
                "{}: an issued accrual of {}:{} has {what} '{value}': the history is damaged",
                path.display(),
                a.source_file,
                a.source_line
            ))
        };
        let amount = a
            .amount
            .parse::<rust_decimal::Decimal>()
            .map_err(|_| bad("amount", &a.amount))?;
        let currency = crate::money::Currency::parse(&a.currency)
            .ok_or_else(|| bad("currency", &a.currency))?;
        rows.push(IssuedAccrual {
            source: format!("{}:{}", a.source_file, a.source_line),
            customer_id: a.customer_id,
            program_id: a.program_id,
            accrual_month: a.accrual_month,
            currency,
            association: a.association,
            subscription_id: a.subscription_id,
            basis: a.basis,
            rate: a.rate,
            share: a.share,
            amount,
            designation_line: a.designation_line,
        });
    }
    Ok(render_issued(&record.period, version, &rows, &record.rows))
}

/// The rows of the run's `attainment.csv` (when it has one) that counted
/// the usage records behind `rows`, by usage file, line and workload (a
/// Graph export's row counts every workload: one attainment row each).
fn usage_facts(
    out: &Path,
    listed: &std::collections::HashMap<String, crate::ingest::FileDigest>,
    rows: &[crate::explain::LedgerRow],
) -> Result<BTreeMap<crate::explain::UsageKey, crate::explain::UsageFacts>, Fatal> {
    let mut facts = BTreeMap::new();
    if rows.is_empty() || !listed.contains_key("attainment.csv") {
        return Ok(facts);
    }
    let wanted: std::collections::BTreeSet<crate::explain::UsageKey> =
        rows.iter().map(crate::explain::UsageKey::of).collect();
    let text = crate::render::publish::read_listed(
        out,
        crate::render::publish::Kind::Run,
        "attainment.csv",
        listed,
        "explain refuses to explain from it",
    )?;
    let path = out.join("attainment.csv");
    let mut rdr = csv::ReaderBuilder::new().from_reader(&text[..]);
    let header = rdr
        .headers()
        .map_err(|e| data_err(&path, format!("not a porledger attainment file: {e}")))?
        .clone();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(file), Some(line)) = (col("source_file"), col("source_line")) else {
        return Ok(facts);
    };
    for rec in rdr.records() {
        let rec =
            rec.map_err(|e| data_err(&path, format!("not a porledger attainment file: {e}")))?;
        let get = |name: &str| {
            col(name)
                .and_then(|i| rec.get(i))
                .map(|v| excel_unescape(v).to_string())
                .unwrap_or_default()
        };
        let key = crate::explain::UsageKey {
            source_file: excel_unescape(rec.get(file).unwrap_or("")).to_string(),
            source_line: rec.get(line).unwrap_or("").to_string(),
            workload: crate::ingest::id_key(&get("workload")),
        };
        if !wanted.contains(&key) {
            continue;
        }
        facts.insert(
            key,
            crate::explain::UsageFacts {
                workload: get("workload"),
                month: get("month"),
                mau: get("mau"),
                pau: get("pau"),
                pau_source: get("pau_source"),
                attainment: get("attainment"),
                target_reached: get("target_reached"),
                prior_hwm: get("prior_hwm"),
                compensable_units: get("compensable_units"),
            },
        );
    }
    Ok(facts)
}

/// The history `--history` names, read only.
fn open_history(path: &Path) -> Result<crate::history::History, Fatal> {
    match crate::history::History::open_read(path)? {
        Some(h) => Ok(h),
        None => Err(Fatal::Input(format!(
            "{}: no such history (`porledger close` creates it)",
            path.display()
        ))),
    }
}

fn data_err(file: &Path, message: String) -> Fatal {
    Fatal::Data {
        file: file.display().to_string(),
        line: 0,
        column: None,
        message,
    }
}

/// Reads what [`render_explanation`] needs from `out`. IDs are matched as
/// everywhere, trimmed and case-insensitively: `filter.partner` becomes the
/// run's spelling of the partner (a run holds no two partners that differ in
/// case only).
pub fn load(out: &Path, filter: &mut Filter) -> Result<RunRecord, Fatal> {
    // What is read of the run is checked against its manifest: a changed run
    // is never explained as if porledger had written it.
    use crate::render::publish;
    const REFUSAL: &str = "explain refuses to explain from it";
    let manifest = publish::read_run_manifest(out, "explain")?;
    let listed = &manifest.outputs;
    let summary_path = out.join("summary.json");
    let summary: serde_json::Value = serde_json::from_slice(&publish::read_listed(
        out,
        publish::Kind::Run,
        "summary.json",
        listed,
        REFUSAL,
    )?)
    .map_err(|e| data_err(&summary_path, format!("not a porledger summary: {e}")))?;
    let rounding: RoundingMode = summary["rounding"]
        .as_str()
        .unwrap_or("")
        .parse()
        .map_err(|e: String| data_err(&summary_path, e))?;
    let period = summary["period"].as_str().unwrap_or("").to_string();
    let wanted = crate::ingest::id_key(filter.partner.trim());
    let partner_row = summary["summary"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| {
            r["partner_id"]
                .as_str()
                .is_some_and(|p| crate::ingest::id_matches(&wanted, p))
        });
    if let Some(p) = partner_row.and_then(|r| r["partner_id"].as_str()) {
        filter.partner = p.to_string();
    }
    let partner_name = partner_row
        .and_then(|r| r["partner_name"].as_str())
        .unwrap_or("")
        .to_string();

    let ledger_path = out.join("ledger.csv");
    if !listed.contains_key("ledger.csv") && listed.contains_key("ledger.parquet") {
        return Err(data_err(
            &ledger_path,
            "this run wrote ledger.parquet (--ledger-format parquet); explain reads \
             ledger.csv: run again with --ledger-format csv"
                .to_string(),
        ));
    }
    // By column name; IDs come back unescaped (`-P1` is stored as `'-P1`).
    let expected = publish::listed_digest(out, "ledger.csv", listed)?;
    let ledger_file = crate::ingest::HashingReader::new(std::io::BufReader::with_capacity(
        1 << 20,
        crate::ingest::open_regular(&ledger_path)?,
    ));
    let mut rdr = LedgerReader::new(&ledger_path.display().to_string(), ledger_file)?;
    let mut rows = Vec::new();
    let mut matched = crate::explain::Matched::default();
    while let Some(row) = rdr.next_row()? {
        if row.get(C::PartnerId) != filter.partner {
            continue;
        }
        matched.partner += 1;
        if filter
            .customer
            .as_ref()
            .is_some_and(|c| !same_id(c, row.get(C::CustomerId)))
        {
            continue;
        }
        matched.customer += 1;
        if !matched.programs.contains(row.get(C::ProgramId)) {
            matched.programs.insert(row.get(C::ProgramId).to_string());
        }
        if filter
            .program
            .as_ref()
            .is_some_and(|p| p != row.get(C::ProgramId))
        {
            continue;
        }
        rows.push(row.record()?);
    }
    if !rdr.get_ref().is(expected) {
        return Err(publish::changed_since_written(
            &ledger_path,
            publish::Kind::Run,
            REFUSAL,
        ));
    }

    let mut statement = BTreeMap::new();
    let mut tiers: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let st_rel = format!(
        "partners/{}/statement.csv",
        crate::render::sanitize_file_name(&filter.partner)
    );
    // Read only as listed (a partner without a statement has none).
    if let Some(text) = listed
        .contains_key(&st_rel)
        .then(|| publish::read_listed(out, publish::Kind::Run, &st_rel, listed, REFUSAL))
        .transpose()?
    {
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
            } else if rec.len() == 11 && rec.get(0) != Some("customer_id") {
                // A month line, or the customer and program's `total` row.
                statement.insert((g(0), g(2), g(4), g(5)), g(10));
            }
        }
    }

    let mut designations = BTreeMap::new();
    let mut designations_file = String::new();
    if let Some(d) = manifest.json["inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["role"] == "designations")
    {
        designations_file = d["path"].as_str().unwrap_or("").to_string();
        // Shown only as the run read it: read once, and used only when its
        // SHA-256 is still the manifest's.
        let path = Path::new(&designations_file);
        let read =
            crate::ingest::read_limited(path, crate::ingest::limits::DESIGNATIONS, "designations");
        if let Ok(bytes) = read {
            let sha256 = crate::ingest::sha256_hex(&bytes);
            if d["sha256"] == sha256.as_str() {
                let text = crate::ingest::text_of(path, bytes)?;
                for (i, l) in text.lines().enumerate() {
                    designations.insert((i + 1).to_string(), l.trim_end().to_string());
                }
            }
        }
    }
    let usage = usage_facts(out, listed, &rows)?;
    Ok(RunRecord {
        usage,
        matched,
        period,
        rounding,
        partner_name,
        rows,
        statement,
        tiers,
        designations,
        designations_file,
        restates: manifest.json["history"]["restates"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok()),
    })
}

/// Whether two IDs are one: trimmed and in any letter case (Unicode), as
/// porledger compares IDs everywhere (`crate::ingest::id_key`).
fn same_id(a: &str, b: &str) -> bool {
    a == b || crate::ingest::id_key(a.trim()) == crate::ingest::id_key(b.trim())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_customer_filter_matches_its_id_in_any_letter_case() {
        assert!(super::same_id("ÄBC-1", "äbc-1"));
        assert!(super::same_id(" c1 ", "C1"));
        assert!(!super::same_id("c1", "c2"));
    }
}
