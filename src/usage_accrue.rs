//! Usage accruals: programs with `basis = "usage"` pay, per tenant, workload and
//! month of the period, `min(compensable units, cap_units) x unit rate` of the
//! highest target reached, times the designation's share.
//!
//! Every usage record (a CPOR report row, or a Graph row with all its workloads)
//! ends up accrued, not eligible (with a reason) or rejected; the accruals go into
//! the same [`Fold`](crate::fold::Fold) as billing accruals, the ledger gets a row per accrual with
//! the usage file and line as provenance. Also writes `attainment.csv` and
//! `partners/<id>/attainment.csv`, and the usage part of `summary.json`.

use rust_decimal::Decimal;

use crate::attain::{PartnerUsage, TierNote};
use crate::dates::Period;
use crate::fold::CountsReport;
use crate::pipeline::Inputs;
pub use crate::pipeline::UsageRun;
use crate::statements::StatementSet;

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
