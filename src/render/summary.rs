//! The output schemas of a run's summary.json and manifest.json, and the row
//! accounting they (and the console) report.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::accrue::Reason;
use crate::attain::PartnerUsage;
use crate::dates::Period;
use crate::error::Fatal;
use crate::fold::{CountsReport, CreditCounts, FileCounts};
use crate::pipeline::{Inputs, Streamed, UsageRun};
use crate::render::pdf::PdfManifest;
use crate::render::publish::{self, FileEntry, Staging};
use crate::statements::{StatementSet, SummaryRow};

/// Where the rows of one billing file (or of all) went.
#[derive(Serialize)]
pub struct FileRows {
    pub file: String,
    pub format: String,
    pub rows: u64,
    pub accrued: u64,
    pub not_eligible: u64,
    pub not_eligible_by_reason: BTreeMap<&'static str, u64>,
    pub rejected: u64,
    pub dated_after_period: u64,
    /// Accrued lines credited through a subscription designation, by the
    /// billing column that named the subscription.
    pub designation_matched_on: BTreeMap<&'static str, u64>,
    pub balanced: bool,
    /// `run --history`: credit lines that referred to a charge of a closed
    /// period and those that did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credits_against_history: Option<CreditCounts>,
}

fn file_rows(file: String, format: String, c: &FileCounts, history: bool) -> FileRows {
    FileRows {
        file,
        format,
        rows: c.rows,
        accrued: c.accrued,
        not_eligible: c.not_eligible,
        not_eligible_by_reason: Reason::BILLING
            .iter()
            .map(|r| (r.as_str(), c.not_eligible_by_reason[*r as usize]))
            .collect(),
        rejected: c.rejected,
        dated_after_period: c.dated_after_period,
        designation_matched_on: c.matched_on_report(),
        balanced: c.balanced(),
        credits_against_history: history.then_some(CreditCounts {
            matched: c.credits_matched,
            refused: c.credits_refused,
            unmatched: c.credits_unmatched,
        }),
    }
}

/// Where the rows of a table file (the designations, the FX rates) went.
#[derive(Serialize)]
pub struct DesignationRows {
    pub file: String,
    pub rows: u64,
    pub accepted: u64,
    pub rejected: u64,
}

/// Every input row, accounted for.
#[derive(Serialize)]
pub struct RowAccounting {
    pub billing: Vec<FileRows>,
    pub total: FileRows,
    pub designations: DesignationRows,
    /// `--fx`: the FX file's rows (`rows = accepted + rejected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fx: Option<DesignationRows>,
}

/// The row accounting of a streamed set of inputs.
pub fn accounting(inputs: &Inputs, streamed: &Streamed) -> RowAccounting {
    // With a history (`run` or `validate --history`) the credit counts are
    // shown, zeros included.
    let history = inputs.source_keys || inputs.closed.is_some();
    let billing: Vec<FileRows> = inputs
        .files
        .iter()
        .zip(&streamed.fold.files)
        .zip(&inputs.opened)
        .map(|((f, c), o)| {
            file_rows(
                f.display.clone(),
                o.layout.format.as_str().into(),
                c,
                history,
            )
        })
        .collect();
    RowAccounting {
        billing,
        total: file_rows(
            "(all billing files)".into(),
            String::new(),
            &streamed.fold.totals(),
            history,
        ),
        designations: DesignationRows {
            file: inputs.designations_display.clone(),
            rows: inputs.designations.rows_read,
            accepted: inputs.index.len() as u64,
            rejected: inputs.designations.rejects.len() as u64,
        },
        fx: None,
    }
}

/// One currency's total accrual.
#[derive(Serialize)]
pub struct CurrencyAmount {
    pub currency: String,
    pub accrual_amount: String,
}

/// The accruals of a statement set, summed per currency (sorted by code).
pub fn totals_by_currency(set: &StatementSet) -> Vec<CurrencyAmount> {
    let mut m: BTreeMap<String, rust_decimal::Decimal> = BTreeMap::new();
    for s in &set.summary {
        *m.entry(s.currency.to_string()).or_default() += s.accrual_amount;
    }
    m.into_iter()
        .map(|(currency, a)| CurrencyAmount {
            currency,
            accrual_amount: a.to_string(),
        })
        .collect()
}

/// summary.json.
#[derive(Serialize)]
pub struct SummaryJson<'a> {
    pub period: String,
    pub statement_date: String,
    pub rounding: &'static str,
    pub summary: &'a [SummaryRow],
    pub totals: Vec<CurrencyAmount>,
    pub rows: &'a RowAccounting,
    /// Usage rows, attainment and partner metrics (only with `--usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageJson>,
}

#[derive(Serialize)]
struct Counts {
    billing_rows: u64,
    accrued: u64,
    not_eligible: u64,
    rejected_billing_rows: u64,
    rejected_designation_rows: u64,
    partners: usize,
    customer_statements: usize,
}

/// manifest.json.
#[derive(Serialize)]
struct Manifest {
    tool: &'static str,
    version: &'static str,
    period: String,
    rounding: &'static str,
    inputs: Vec<FileEntry>,
    outputs: Vec<FileEntry>,
    counts: Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pdf: Option<PdfManifest>,
    /// With `run --history`: what the run found in the history.
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<crate::history::RunHistory>,
}

/// The manifest entries of the billing, usage, designations and rules files.
pub fn input_entries(inputs: &Inputs, streamed: &Streamed) -> Vec<FileEntry> {
    let mut ins = Vec::new();
    for ((f, d), o) in inputs
        .files
        .iter()
        .zip(&streamed.digests)
        .zip(&inputs.opened)
    {
        ins.push(FileEntry {
            path: f.display.clone(),
            sha256: d.sha256.clone(),
            bytes: d.bytes,
            role: Some("billing".into()),
            format: Some(o.layout.format.as_str().into()),
        });
    }
    for u in &inputs.usage.files {
        ins.push(FileEntry {
            path: u.input.display.clone(),
            sha256: u.digest.sha256.clone(),
            bytes: u.digest.bytes,
            role: Some("usage".into()),
            format: Some(u.format.as_str().into()),
        });
    }
    ins.push(FileEntry {
        path: inputs.designations_display.clone(),
        sha256: inputs.designations_digest.sha256.clone(),
        bytes: inputs.designations_digest.bytes,
        role: Some("designations".into()),
        format: None,
    });
    ins.push(FileEntry {
        path: inputs.rules_path.to_string_lossy().into_owned(),
        sha256: inputs.rules_digest.sha256.clone(),
        bytes: inputs.rules_digest.bytes,
        role: Some("rules".into()),
        format: None,
    });
    ins
}

/// What the manifest holds besides the billing inputs and the outputs.
pub struct ManifestExtras {
    /// Inputs read outside the stream (the `--fx` table).
    pub inputs: Vec<FileEntry>,
    pub pdf: Option<PdfManifest>,
    /// With `--history`: what the run found in the history.
    pub history: Option<crate::history::RunHistory>,
}

/// What a run's statements came to, counted as they were written.
#[derive(Clone, Copy, Debug)]
pub struct Issued {
    pub partners: usize,
    pub customer_statements: usize,
}

/// Writes `dir/manifest.json`: every input, every output already in `dir`
/// (hashed), the counts and the PDF manifest.
pub fn write_manifest(
    staging: &Staging,
    inputs: &Inputs,
    streamed: &Streamed,
    issued: &Issued,
    period: Period,
    extra: ManifestExtras,
) -> Result<(), Fatal> {
    let ManifestExtras {
        inputs: extra_inputs,
        pdf,
        history,
    } = extra;
    let (dir, files) = (&staging.dir, &staging.files);
    let mut ins = input_entries(inputs, streamed);
    ins.extend(extra_inputs);
    let t = streamed.fold.totals();
    let manifest = Manifest {
        tool: "porledger",
        version: env!("CARGO_PKG_VERSION"),
        period: period.label(),
        rounding: inputs.rules.rounding.as_str(),
        inputs: ins,
        outputs: publish::hash_outputs(dir, files)?,
        counts: Counts {
            billing_rows: t.rows,
            accrued: t.accrued,
            not_eligible: t.not_eligible,
            rejected_billing_rows: t.rejected,
            rejected_designation_rows: inputs.designations.rejects.len() as u64,
            partners: issued.partners,
            customer_statements: issued.customer_statements,
        },
        pdf,
        history,
    };
    publish::write_json(files, &dir.join("manifest.json"), &manifest)
}

/// The usage part of `summary.json`.
#[derive(serde::Serialize)]
pub struct UsageJson {
    pub files: Vec<CountsReport>,
    pub total: CountsReport,
    pub attainment_rows: usize,
    pub partners: Vec<PartnerUsageJson>,
}

#[derive(serde::Serialize)]
pub struct PartnerUsageJson {
    pub partner_id: String,
    pub partner_name: String,
    pub tenant_workloads: usize,
    pub workloads: Vec<crate::attain::WorkloadSeats>,
    pub competencies: Vec<crate::attain::CompetencyResult>,
    pub capability: Vec<crate::attain::MetricScore>,
    #[serde(with = "rust_decimal::serde::str")]
    pub capability_points: Decimal,
}

pub fn usage_json(
    run: &UsageRun,
    partners: &[PartnerUsage],
    inputs: &Inputs,
    period: Period,
) -> UsageJson {
    UsageJson {
        files: run.files.clone(),
        total: run.total.clone(),
        attainment_rows: inputs
            .attainment
            .rows
            .values()
            .filter(|a| period.contains(a.month.first_day()))
            .count(),
        partners: partners
            .iter()
            .map(|p| PartnerUsageJson {
                partner_id: p.partner_id.clone(),
                partner_name: p.partner_name.clone(),
                tenant_workloads: p.lines.len(),
                workloads: p.workloads.clone(),
                competencies: p.competencies.clone(),
                capability: p.capability.clone(),
                capability_points: p.capability_points.normalize(),
            })
            .collect(),
    }
}
