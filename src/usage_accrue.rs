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

use crate::accrue::{Accrual, Reason};
use crate::attain::{highest_target, PartnerUsage, TierNote};
use crate::attribute::split_shares;
use crate::config::workload_key;
use crate::config::Basis;
use crate::dates::{add_months, Period};
use crate::fold::{CountsReport, FileCounts, Fold};
use crate::ingest::designations::Designation;
use crate::ingest::usage::UsageObs;
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

enum ObsOutcome<'a> {
    Accrued(Vec<Accrual<'a>>),
    NotEligible(Reason, String),
}

fn accrue_obs<'a>(inputs: &'a Inputs, oi: usize, o: &UsageObs, period: Period) -> ObsOutcome<'a> {
    use Reason as R;
    if !period.contains(o.date) {
        return ObsOutcome::NotEligible(
            R::OutsidePeriod,
            format!(
                "{}: {} is outside the period {period} (kept as history for the high-water mark and usage growth)",
                o.workload_name, o.date
            ),
        );
    }
    let table = &inputs.attainment;
    if let Some(&w) = table.superseded.get(&oi) {
        let wo = &inputs.usage.obs[w];
        return ObsOutcome::NotEligible(
            R::Superseded,
            format!(
                "{}: replaced by the later report {}:{} for {} {}",
                o.workload_name,
                inputs.usage.files[wo.file].input.display,
                wo.line,
                o.workload_name,
                o.month
            ),
        );
    }
    let Some(att) = table.winner_of.get(&oi).and_then(|k| table.rows.get(k)) else {
        return ObsOutcome::NotEligible(R::Superseded, "no attainment row".into());
    };
    let mut misses: Vec<(R, String)> = Vec::new();
    let mut out = Vec::new();
    let rules = &inputs.rules;
    let date = o.date;
    for (pi, p) in rules.programs.iter().enumerate() {
        if p.basis() != Basis::Usage {
            continue;
        }
        let miss = |r: R, d: String| (r, format!("{}: {}: {d}", p.id, o.workload_name));
        if !p.in_force(date) {
            misses.push(miss(
                R::RuleNotInForce,
                format!("rule not in force on {date}"),
            ));
            continue;
        }
        let Some(wr) = p.workloads().iter().find(|w| w.workload == o.workload) else {
            misses.push(miss(
                R::WorkloadNotCovered,
                "workload not in the program".into(),
            ));
            continue;
        };
        let mut credits: Vec<(&Designation, Decimal)> = Vec::new();
        let mut before: Option<&Designation> = None;
        let mut window: Option<&Designation> = None;
        let mut conflict = None;
        for &a in &p.associations {
            let mut ds: Vec<&Designation> = Vec::new();
            for d in inputs.index.of_customer(&o.customer_id) {
                if d.association != a
                    || !(d.workload.is_empty() || workload_key(&d.workload) == o.workload)
                {
                    continue;
                }
                if d.valid_from.is_some_and(|f| date < f) {
                    before = before.or(Some(d));
                    continue;
                }
                if !d.valid_on(date) {
                    continue;
                }
                if let (Some(w), Some(f)) = (p.window_months, d.valid_from) {
                    if date >= add_months(f, w) {
                        window = window.or(Some(d));
                        continue;
                    }
                }
                ds.push(d);
            }
            let mut split: Vec<(&Designation, Decimal)> = ds
                .into_iter()
                .map(|d| (d, d.share.unwrap_or_default()))
                .collect();
            match split_shares(&mut split, |c| c.0.share, |c, s| c.1 = s) {
                Ok(_) => credits.extend(split),
                Err(sum) => conflict = Some((a, sum)),
            }
        }
        if let Some((a, sum)) = conflict {
            misses.push(miss(
                R::ShareConflict,
                format!("{a} shares add up to {} (more than 1)", sum.normalize()),
            ));
            continue;
        }
        if credits.is_empty() {
            let assoc: Vec<&str> = p.associations.iter().map(|a| a.as_str()).collect();
            misses.push(match (window, before) {
                (Some(d), _) => miss(
                    R::OutsideWindow,
                    format!(
                        "outside the {}-month window of the designation ({} line {})",
                        p.window_months.unwrap_or(0),
                        inputs.designations_display,
                        d.line
                    ),
                ),
                (None, Some(d)) => miss(
                    R::BeforeAssociation,
                    format!(
                        "usage dated {date} is before the {} designation's valid_from {} ({} line {})",
                        d.association,
                        d.valid_from.map(|f| f.to_string()).unwrap_or_default(),
                        inputs.designations_display,
                        d.line
                    ),
                ),
                (None, None) => miss(
                    R::NoDesignation,
                    format!("no {} credit on {date}", assoc.join("/")),
                ),
            });
            continue;
        }
        let Some(a) = att.attainment else {
            misses.push(miss(
                R::PauZero,
                format!(
                    "paid available units are 0 ({}): attainment not computable",
                    att.pau_source.as_str()
                ),
            ));
            continue;
        };
        let Some(level) = highest_target(Some(a), &wr.targets) else {
            misses.push(miss(
                R::BelowTarget,
                format!(
                    "attainment {}/{} = {a} is below the first target {}",
                    att.mau, att.pau, wr.targets[0]
                ),
            ));
            continue;
        };
        let units = match wr.cap_units {
            Some(c) => att.compensable.min(Decimal::from(c)),
            None => att.compensable,
        };
        if units <= Decimal::ZERO {
            misses.push(miss(
                R::NoGrowth,
                format!(
                    "min(MAU {}, PAU {}) does not exceed the prior high-water mark {}",
                    att.mau, att.pau, att.prior_hwm
                ),
            ));
            continue;
        }
        let rate = wr.unit_rates[level];
        for (d, share) in credits {
            out.push(Accrual {
                program: pi,
                partner_id: &d.partner_id,
                association: d.association,
                basis: units,
                rate,
                share,
                amount: units * rate * share,
                designation: Some(d),
                days: None,
            });
        }
    }
    if !out.is_empty() {
        return ObsOutcome::Accrued(out);
    }
    if misses.is_empty() {
        return ObsOutcome::NotEligible(
            R::RuleNotInForce,
            format!("{}: the rules have no usage program", o.workload_name),
        );
    }
    let reason = misses
        .iter()
        .map(|m| m.0)
        .max()
        .unwrap_or(R::RuleNotInForce);
    let detail = misses
        .into_iter()
        .map(|m| m.1)
        .collect::<Vec<_>>()
        .join("; ");
    ObsOutcome::NotEligible(reason, detail)
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
            match accrue_obs(inputs, k, o, period) {
                ObsOutcome::Accrued(acc) => {
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
                ObsOutcome::NotEligible(r, d) => {
                    details.push(d);
                    if worst.as_ref().is_none_or(|w| r > w.0) {
                        worst = Some((r, vec![o.workload_name.clone()]));
                    } else if let Some(w) = worst.as_mut().filter(|w| w.0 == r) {
                        w.1.push(o.workload_name.clone());
                    }
                }
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
