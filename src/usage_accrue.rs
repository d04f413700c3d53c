//! Usage accruals: programs with `basis = "usage"` pay, per tenant, workload and
//! month of the period, `min(compensable units, cap_units) x unit rate` of the
//! highest target reached, times the designation's share.
//!
//! Every usage record (a CPOR report row, or a Graph row with all its workloads)
//! ends up accrued, not eligible (with a reason) or rejected; the accruals go into
//! the same [`Fold`] as billing accruals, the ledger gets a row per accrual with
//! the usage file and line as provenance. Also writes `attainment.csv` and
//! `partners/<id>/attainment.csv`, and the usage part of `summary.json`.

use rust_decimal::Decimal;

use crate::accrue::{accrue_observation, Accrual, Context, Outcome, Reason};
use crate::attain::{PartnerUsage, TierNote};
use crate::dates::Period;
use crate::fold::{CountsReport, FileCounts, Fold};
use crate::money::{format_exact, format_exact_dp};
use crate::pipeline::{ChunkOutput, Inputs};
use crate::render::csv::{ratio, row, writer};
use crate::statements::StatementSet;

/// What accruing the usage records produced.
pub struct UsageRun {
    /// Ledger and not-eligible rows, for the run's sink (rejects were written before).
    pub output: ChunkOutput,
    pub files: Vec<CountsReport>,
    pub total: CountsReport,
}

/// Accrues every usage observation of the period. Records are processed in input
/// order; the output does not depend on threads (there are none here).
pub fn accrue_usage(inputs: &Inputs, period: Period) -> UsageRun {
    let usage = &inputs.usage;
    let mut files = read_file_counts(inputs);
    let mut fold = Fold::new(0);
    let mut ledger = writer(Vec::new());
    let mut not_eligible = writer(Vec::new());
    let mut i = 0;
    let obs = &usage.obs;
    let ctx = Context {
        rules: &inputs.rules,
        index: &inputs.index,
        designations_file: &inputs.designations_display,
        attainment: Some(&inputs.attainment),
    };
    let mut acc: Vec<Accrual<'_>> = Vec::new();
    while i < obs.len() {
        // One record = the observations of one (file, line).
        let mut j = i;
        while j < obs.len() && obs[j].file == obs[i].file && obs[j].line == obs[i].line {
            j += 1;
        }
        let first = &obs[i];
        let file = &usage.files[first.file];
        let mut accrued = false;
        let mut worst: Option<(Reason, Vec<String>)> = None;
        let mut details = Vec::new();
        for (k, o) in obs.iter().enumerate().take(j).skip(i) {
            acc.clear();
            match accrue_observation(&ctx, usage, k, o, period, &mut acc) {
                Outcome::Accrued => {
                    accrued = true;
                    let cur = o.workload_name.as_str().to_string();
                    let currency = |pi: usize| {
                        inputs.rules.programs[pi]
                            .usage_currency()
                            .unwrap_or_else(|| crate::money::Currency::parse("USD").expect("USD"))
                    };
                    if let Some(n) = usage.customer_names.get(&o.customer_id) {
                        fold.note_customer(&o.customer_id, n, u64::MAX);
                    }
                    for a in &acc {
                        let c = currency(a.program);
                        fold.add(a, &o.customer_id, &cur, c);
                        let _ = row(
                            &mut ledger,
                            &[
                                a.partner_id,
                                &o.customer_id,
                                &inputs.rules.programs[a.program].id,
                                a.association.as_str(),
                                &cur,
                                &o.date.to_string(),
                                &file.input.display,
                                &o.line.to_string(),
                                &format_exact_dp(a.basis, 0),
                                &ratio(a.rate),
                                &ratio(a.share),
                                &format_exact(a.amount, c),
                                c.as_str(),
                                &a.designation
                                    .map(|d| d.line.to_string())
                                    .unwrap_or_default(),
                                // credited_days, charge_days: no proration for usage.
                                "",
                                "",
                            ],
                        );
                    }
                }
                Outcome::NotEligible {
                    reason: r,
                    detail: d,
                } => {
                    details.push(d);
                    if worst.as_ref().is_none_or(|w| r > w.0) {
                        worst = Some((r, vec![o.workload_name.clone()]));
                    } else if let Some(w) = worst.as_mut().filter(|w| w.0 == r) {
                        w.1.push(o.workload_name.clone());
                    }
                }
                // Attribution of usage never rejects (share conflicts are a reason).
                Outcome::Rejected { .. } => {}
            }
        }
        let counts = &mut files[first.file];
        if accrued {
            counts.accrued += 1;
        } else if let Some((r, workloads)) = worst {
            counts.note_not_eligible(r);
            let mau: Decimal = obs[i..j].iter().map(|o| o.mau).sum();
            let _ = row(
                &mut not_eligible,
                &[
                    &file.input.display,
                    &first.line.to_string(),
                    &first.customer_id,
                    &workloads.join(";"),
                    &first.date.to_string(),
                    &format_exact_dp(mau, 0),
                    "",
                    r.as_str(),
                    &details.join("; "),
                ],
            );
        }
        i = j;
    }
    let mut total = FileCounts::default();
    for f in &files {
        total.add(f);
    }
    let inner = |w: csv::Writer<Vec<u8>>| w.into_inner().unwrap_or_default();
    UsageRun {
        output: ChunkOutput {
            seq: 0,
            bytes: 0,
            fold,
            ledger: inner(ledger),
            not_eligible: inner(not_eligible),
            rejects: Vec::new(),
            reject_samples: Vec::new(),
            n_rejects: 0,
        },
        files: reports(inputs, &files),
        total: total.report("(all usage files)".into(), String::new(), &Reason::USAGE),
    }
}

/// Each usage file's counts before accruing: rows read and rejected.
fn read_file_counts(inputs: &Inputs) -> Vec<FileCounts> {
    inputs
        .usage
        .files
        .iter()
        .map(|f| FileCounts {
            rows: f.rows,
            rejected: f.rejected,
            ..FileCounts::default()
        })
        .collect()
}

/// Each usage file's counts as reported (usage reasons by name).
fn reports(inputs: &Inputs, counts: &[FileCounts]) -> Vec<CountsReport> {
    inputs
        .usage
        .files
        .iter()
        .zip(counts)
        .map(|(f, c)| {
            c.report(
                f.input.display.clone(),
                f.format.as_str().into(),
                &Reason::USAGE,
            )
        })
        .collect()
}

/// Counts of usage files without a period (`validate`): read, usable, rejected.
pub fn read_counts(inputs: &Inputs) -> Vec<CountsReport> {
    reports(inputs, &read_file_counts(inputs))
}

/// Puts the partner usage views on the statements (partners without a statement
/// keep theirs only in `partners/<id>/attainment.csv`).
pub fn attach(set: &mut StatementSet, partners: &[PartnerUsage], notes: &[TierNote]) {
    for p in set.partners.iter_mut() {
        if let Some(u) = partners.iter().find(|u| u.partner_id == p.partner_id) {
            p.attainment = u.lines.clone();
        }
        let mut ns: Vec<TierNote> = notes
            .iter()
            .filter(|n| {
                p.lines
                    .iter()
                    .any(|l| *l.customer_id == *n.customer_id && *l.program_id == *n.program_id)
            })
            .cloned()
            .collect();
        ns.sort_by(|a, b| {
            (&a.customer_id, &a.program_id, &a.product, a.month).cmp(&(
                &b.customer_id,
                &b.program_id,
                &b.product,
                b.month,
            ))
        });
        p.tier_notes = ns;
    }
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
