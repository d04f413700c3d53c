//! `porledger close`: records a published run as the issued statements of its
//! period in the history, in one transaction.
//!
//! Reads only the run's own outputs in `--out`, each checked against the
//! SHA-256 that `manifest.json` gives for it (the bytes stored are the bytes
//! that were hashed): `manifest.json` (period, inputs, outputs),
//! `statements.json` (lines, totals, designation rows), `ledger.csv` (the
//! accruals, by column name) and `attainment.csv` when the run read usage
//! (monthly active users, for later high-water marks).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cli::CloseArgs;
use crate::cmd::Finish;
use crate::error::Fatal;
use crate::history::{
    AccrualRec, CloseError, CloseRecord, FileRec, History, LineRec, RunHistory, TotalRec, UsageMark,
};
use crate::ingest::FileDigest;
use crate::ledger::{LedgerColumn as C, LedgerReader};
use crate::render::publish;
use crate::statements::StatementSet;

pub fn close(args: &CloseArgs) -> Result<Finish, Fatal> {
    let out = &args.out;
    let listed = publish::manifest_outputs(out)?;
    let manifest_path = out.join("manifest.json");
    let manifest_bytes = std::fs::read(&manifest_path).map_err(|e| Fatal::io(&manifest_path, e))?;
    let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| data_err(&manifest_path, format!("not a porledger manifest: {e}")))?;
    let mut rec = CloseRecord {
        period: text(&manifest, "period", &manifest_path)?,
        manifest_sha256: crate::ingest::hex(&Sha256::digest(&manifest_bytes)),
        tool_version: text(&manifest, "version", &manifest_path)?,
        rounding: text(&manifest, "rounding", &manifest_path)?,
        restates: match manifest.get("history") {
            Some(h) => {
                serde_json::from_value::<RunHistory>(h.clone())
                    .map_err(|e| data_err(&manifest_path, format!("\"history\": {e}")))?
                    .restates
            }
            None => None,
        },
        inputs: files(&manifest, "inputs", &manifest_path)?,
        outputs: files(&manifest, "outputs", &manifest_path)?,
        ..CloseRecord::default()
    };
    let ledger_path = out.join("ledger.csv");
    if !listed.contains_key("ledger.csv") {
        let why = if listed.contains_key("ledger.parquet") {
            "this run wrote ledger.parquet; close reads ledger.csv: run again with --ledger-format csv"
        } else {
            "not listed in manifest.json"
        };
        return Err(data_err(&ledger_path, why.into()));
    }
    let set = read_statements(out, &listed)?;
    statement_records(&set, &mut rec);
    if listed.contains_key("attainment.csv") {
        rec.usage = read_usage(out, &listed)?;
    }

    let mut history = History::open_write(&args.history, Duration::from_secs(args.wait))?;
    let file = std::fs::File::open(&ledger_path).map_err(|e| Fatal::io(&ledger_path, e))?;
    let hashing = HashingReader {
        inner: std::io::BufReader::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let rows = LedgerRows {
        rdr: LedgerReader::new(&ledger_path.display().to_string(), hashing)?,
        expected: listed.get("ledger.csv").cloned(),
        path: ledger_path.clone(),
        done: false,
    };
    let version = history.close(&rec, rows, fault_hook).map_err(|e| match e {
        CloseError::History(h) => Fatal::History(h),
        CloseError::Source(f) => f,
    })?;
    if !args.quiet {
        eprintln!(
            "porledger: closed {} as version {version} in {}: {} statement lines, {} partner totals, {} usage marks",
            rec.period,
            args.history.display(),
            rec.lines.len(),
            rec.totals.len(),
            rec.usage.len()
        );
    }
    Ok(Finish::Clean)
}

/// The test hook: `PORLEDGER_FAULT_AT=close-before-commit` aborts the process
/// inside the transaction after every row is written (a real kill: nothing
/// is cleaned up); `sleep:close-before-commit` sleeps 60 s there, holding the
/// write lock (to kill it, or to race a second process against it).
fn fault_hook() {
    let Some(v) = std::env::var_os("PORLEDGER_FAULT_AT") else {
        return;
    };
    for item in v.to_string_lossy().split(',').map(str::trim) {
        if item == "close-before-commit" {
            std::process::abort();
        }
        if item == "sleep:close-before-commit" {
            eprintln!("porledger: test hook: sleeping before the commit of close");
            std::thread::sleep(Duration::from_secs(60));
        }
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

fn text(v: &serde_json::Value, key: &str, file: &Path) -> Result<String, Fatal> {
    v.get(key)
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .ok_or_else(|| data_err(file, format!("no \"{key}\": not a porledger manifest")))
}

fn files(v: &serde_json::Value, key: &str, file: &Path) -> Result<Vec<FileRec>, Fatal> {
    let list = v
        .get(key)
        .and_then(|l| l.as_array())
        .ok_or_else(|| data_err(file, format!("no \"{key}\": not a porledger manifest")))?;
    list.iter()
        .map(|e| {
            Ok(FileRec {
                path: text(e, "path", file)?,
                role: e
                    .get("role")
                    .and_then(|r| r.as_str())
                    .unwrap_or("")
                    .to_string(),
                sha256: text(e, "sha256", file)?,
                bytes: e.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0),
            })
        })
        .collect()
}

/// Reads `rel` in `out` and checks it against the manifest.
fn read_checked(
    out: &Path,
    rel: &str,
    listed: &HashMap<String, FileDigest>,
) -> Result<Vec<u8>, Fatal> {
    let path = out.join(rel);
    let bytes = std::fs::read(&path).map_err(|e| Fatal::io(&path, e))?;
    let d = listed
        .get(rel)
        .ok_or_else(|| data_err(&path, "not listed in manifest.json".into()))?;
    if d.bytes != bytes.len() as u64 || d.sha256 != crate::ingest::hex(&Sha256::digest(&bytes)) {
        return Err(changed(&path));
    }
    Ok(bytes)
}

fn changed(path: &Path) -> Fatal {
    Fatal::Input(format!(
        "{}: its SHA-256 differs from the one in manifest.json: the output was changed after porledger wrote it, so close refuses to record it (the history was not changed; run `porledger run` again)",
        path.display()
    ))
}

fn read_statements(
    out: &Path,
    listed: &HashMap<String, FileDigest>,
) -> Result<StatementSet, Fatal> {
    let bytes = read_checked(out, "statements.json", listed)?;
    serde_json::from_slice(&bytes).map_err(|e| Fatal::Data {
        file: out.join("statements.json").display().to_string(),
        line: e.line() as u64,
        column: None,
        message: format!("cannot read the statement model: {e}"),
    })
}

/// The statement lines, totals and designation rows of `set` into `rec`.
fn statement_records(set: &StatementSet, rec: &mut CloseRecord) {
    for p in &set.partners {
        for l in &p.lines {
            rec.lines.push(LineRec {
                partner_id: p.partner_id.clone(),
                partner_name: p.partner_name.clone(),
                customer_id: l.customer_id.to_string(),
                customer_name: l.customer_name.to_string(),
                program_id: l.program_id.to_string(),
                accrual_month: l.month.to_string(),
                currency: l.currency.as_str().to_string(),
                lines: l.lines,
                basis: l.basis.to_string(),
                amount: l.amount.to_string(),
            });
        }
        for t in &p.totals {
            rec.totals.push(TotalRec {
                partner_id: p.partner_id.clone(),
                partner_name: p.partner_name.clone(),
                currency: t.currency.as_str().to_string(),
                amount: t.amount.to_string(),
            });
        }
    }
    rec.designations = crate::history::adjust::designations_of(set);
}

/// The monthly active users of `attainment.csv` (one row per tenant,
/// workload and month: the report that won).
fn read_usage(out: &Path, listed: &HashMap<String, FileDigest>) -> Result<Vec<UsageMark>, Fatal> {
    let path = out.join("attainment.csv");
    let bytes = read_checked(out, "attainment.csv", listed)?;
    let mut rdr = csv::Reader::from_reader(bytes.as_slice());
    let header = rdr
        .headers()
        .map_err(|e| data_err(&path, e.to_string()))?
        .clone();
    let pos = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Fatal::Data {
                file: path.display().to_string(),
                line: 1,
                column: Some(name.into()),
                message: "no such column: not a porledger attainment.csv".into(),
            })
    };
    let (c, w, m, u) = (
        pos("customer_id")?,
        pos("workload")?,
        pos("month")?,
        pos("mau")?,
    );
    let mut marks = Vec::new();
    for r in rdr.records() {
        let r = r.map_err(|e| data_err(&path, e.to_string()))?;
        let g = |i: usize| crate::render::excel_unescape(r.get(i).unwrap_or("")).to_string();
        marks.push(UsageMark {
            customer_id: g(c),
            workload: g(w),
            month: g(m),
            mau: g(u),
        });
    }
    Ok(marks)
}

/// Hashes what it reads.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The ledger's rows as accruals; at the end, the bytes read are checked
/// against the manifest (an error then rolls the close back).
struct LedgerRows<R: Read> {
    rdr: LedgerReader<HashingReader<R>>,
    expected: Option<FileDigest>,
    path: PathBuf,
    done: bool,
}

impl<R: Read> LedgerRows<R> {
    fn next_rec(&mut self) -> Result<Option<AccrualRec>, Fatal> {
        let Some(row) = self.rdr.next_row()? else {
            return Ok(None);
        };
        let line = row.line();
        let num = |c: C| -> Result<Option<u64>, Fatal> {
            let v = row.get(c);
            if v.is_empty() {
                return Ok(None);
            }
            v.parse().map(Some).map_err(|_| Fatal::Data {
                file: self.path.display().to_string(),
                line,
                column: Some(crate::ledger::LEDGER_COLUMNS[c as usize].name.into()),
                message: format!("'{v}' is not a whole number"),
            })
        };
        Ok(Some(AccrualRec {
            partner_id: row.get(C::PartnerId).to_string(),
            customer_id: row.get(C::CustomerId).to_string(),
            program_id: row.get(C::ProgramId).to_string(),
            association: row.get(C::Association).to_string(),
            subscription_id: row.get(C::SubscriptionId).to_string(),
            charge_date: row.get(C::ChargeDate).to_string(),
            accrual_month: row.get(C::AccrualMonth).to_string(),
            source_file: row.get(C::SourceFile).to_string(),
            source_line: num(C::SourceLine)?.unwrap_or(0),
            reference_id: None,
            product_id: None,
            sku_id: None,
            charge_start: None,
            charge_end: None,
            basis: row.get(C::BasisAmount).to_string(),
            rate: row.get(C::Rate).to_string(),
            share: row.get(C::Share).to_string(),
            amount: row.get(C::AccrualAmount).to_string(),
            currency: row.get(C::Currency).to_string(),
            designation_line: num(C::DesignationLine)?,
        }))
    }
}

impl<R: Read> Iterator for LedgerRows<R> {
    type Item = Result<AccrualRec, Fatal>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_rec() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                let h = self.rdr.get_ref();
                let sha = crate::ingest::hex(&h.hash.clone().finalize());
                match &self.expected {
                    Some(d) if d.sha256 == sha && d.bytes == h.bytes => None,
                    _ => Some(Err(changed(&self.path))),
                }
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
