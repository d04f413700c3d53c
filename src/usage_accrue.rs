//! Usage accruals: programs with `basis = "usage"` pay, per tenant, workload and
//! month of the period, `min(compensable units, cap_units) x unit rate` of the
//! highest target reached, times the designation's share.
//!
//! Every usage record (a CPOR report row, or a Graph row with all its workloads)
//! ends up accrued, not eligible (with a reason) or rejected; the accruals go into
//! the same [`Fold`] as billing accruals, the ledger gets a row per accrual with
//! the usage file and line as provenance. Also writes `attainment.csv` and
//! `partners/<id>/attainment.csv`, and the usage part of `summary.json`.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;

use crate::accrue::Accrual;
use crate::attain::{highest_target, Attainment, PartnerUsage, TierNote};
use crate::config::workload_key;
use crate::config::Basis;
use crate::dates::{add_months, Period};
use crate::error::Fatal;
use crate::fold::Fold;
use crate::ingest::designations::Designation;
use crate::ingest::usage::UsageObs;
use crate::money::{format_exact, format_exact_dp};
use crate::pipeline::{ChunkOutput, Inputs};
use crate::render::csv::{ratio, row, writer};
use crate::render::sanitize_file_name;
use crate::statements::StatementSet;

/// Why a usage record earned nothing. Ordered from "furthest from paying" to
/// "closest"; a record's reason is the closest of its workloads and programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum UsageReason {
    /// Dated outside the period: history (high-water mark, usage growth).
    OutsidePeriod = 0,
    /// A later report for the same tenant, workload and month replaced it.
    Superseded,
    /// No usage program is in force on the row's date.
    RuleNotInForce,
    /// No usage program lists the workload.
    WorkloadNotCovered,
    /// No partner holds one of the program's associations for the tenant and workload.
    NoDesignation,
    /// The designation starts after the usage date (CPOR: usage before the claim).
    BeforeAssociation,
    /// After the program's window from the designation's valid_from.
    OutsideWindow,
    /// Paid available units are 0: attainment not computable.
    PauZero,
    /// Attainment below the program's first target.
    BelowTarget,
    /// Nothing above the prior high-water mark (compensable units 0).
    NoGrowth,
    /// Explicit designation shares above 1.
    ShareConflict,
}

impl UsageReason {
    pub const ALL: [UsageReason; 11] = [
        UsageReason::OutsidePeriod,
        UsageReason::Superseded,
        UsageReason::RuleNotInForce,
        UsageReason::WorkloadNotCovered,
        UsageReason::NoDesignation,
        UsageReason::BeforeAssociation,
        UsageReason::OutsideWindow,
        UsageReason::PauZero,
        UsageReason::BelowTarget,
        UsageReason::NoGrowth,
        UsageReason::ShareConflict,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            UsageReason::OutsidePeriod => "outside-period",
            UsageReason::Superseded => "superseded",
            UsageReason::RuleNotInForce => "rule-not-in-force",
            UsageReason::WorkloadNotCovered => "workload-not-covered",
            UsageReason::NoDesignation => "no-designation",
            UsageReason::BeforeAssociation => "before-association",
            UsageReason::OutsideWindow => "outside-window",
            UsageReason::PauZero => "pau-zero",
            UsageReason::BelowTarget => "below-target",
            UsageReason::NoGrowth => "no-growth",
            UsageReason::ShareConflict => "share-conflict",
        }
    }
}

/// Where the records of one usage file went: `rows = accrued + not_eligible + rejected`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsageCounts {
    pub file: String,
    pub format: String,
    pub rows: u64,
    pub accrued: u64,
    pub not_eligible: u64,
    pub not_eligible_by_reason: BTreeMap<&'static str, u64>,
    pub rejected: u64,
    pub balanced: bool,
}

impl UsageCounts {
    fn new(file: String, format: String) -> UsageCounts {
        UsageCounts {
            file,
            format,
            not_eligible_by_reason: UsageReason::ALL.iter().map(|r| (r.as_str(), 0)).collect(),
            ..UsageCounts::default()
        }
    }
    fn add(&mut self, o: &UsageCounts) {
        self.rows += o.rows;
        self.accrued += o.accrued;
        self.not_eligible += o.not_eligible;
        self.rejected += o.rejected;
        for (k, v) in &o.not_eligible_by_reason {
            *self.not_eligible_by_reason.entry(k).or_default() += v;
        }
    }
    fn check(&mut self) {
        self.balanced = self.rows == self.accrued + self.not_eligible + self.rejected
            && self.not_eligible == self.not_eligible_by_reason.values().sum::<u64>();
    }
}

/// What accruing the usage records produced.
pub struct UsageRun {
    /// Ledger and not-eligible rows, for the run's sink (rejects were written before).
    pub output: ChunkOutput,
    pub files: Vec<UsageCounts>,
    pub total: UsageCounts,
}

enum ObsOutcome<'a> {
    Accrued(Vec<Accrual<'a>>),
    NotEligible(UsageReason, String),
}

/// Splits credit among the designations of one association: explicit shares,
/// the rest equally (the last blank takes the remainder).
fn shares(ds: &[&Designation]) -> Result<Vec<Decimal>, Decimal> {
    let explicit: Decimal = ds.iter().filter_map(|d| d.share).sum();
    if explicit > Decimal::ONE {
        return Err(explicit);
    }
    let blanks = ds.iter().filter(|d| d.share.is_none()).count() as u32;
    let left = Decimal::ONE - explicit;
    let each = if blanks > 0 {
        (left / Decimal::from(blanks)).round_dp_with_strategy(
            crate::attribute::SHARE_DP,
            rust_decimal::RoundingStrategy::ToZero,
        )
    } else {
        Decimal::ZERO
    };
    let mut seen = 0;
    Ok(ds
        .iter()
        .map(|d| match d.share {
            Some(s) => s,
            None => {
                seen += 1;
                if seen == blanks {
                    left - each * Decimal::from(blanks - 1)
                } else {
                    each
                }
            }
        })
        .collect())
}

fn accrue_obs<'a>(inputs: &'a Inputs, oi: usize, o: &UsageObs, period: Period) -> ObsOutcome<'a> {
    use UsageReason as R;
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
            match shares(&ds) {
                Ok(s) => credits.extend(ds.into_iter().zip(s)),
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
    let mut files: Vec<UsageCounts> = usage
        .files
        .iter()
        .map(|f| {
            let mut c = UsageCounts::new(f.input.display.clone(), f.format.as_str().into());
            c.rows = f.rows;
            c.rejected = f.rejected;
            c
        })
        .collect();
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
        let mut worst: Option<(UsageReason, Vec<String>)> = None;
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
            counts.not_eligible += 1;
            *counts.not_eligible_by_reason.entry(r.as_str()).or_default() += 1;
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
    let mut total = UsageCounts::new("(all usage files)".into(), String::new());
    for f in files.iter_mut() {
        f.check();
        total.add(f);
    }
    total.check();
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
        files,
        total,
    }
}

/// Counts of usage files without a period (`validate`): read, usable, rejected.
pub fn read_counts(inputs: &Inputs) -> Vec<UsageCounts> {
    inputs
        .usage
        .files
        .iter()
        .map(|f| {
            let mut c = UsageCounts::new(f.input.display.clone(), f.format.as_str().into());
            c.rows = f.rows;
            c.rejected = f.rejected;
            c
        })
        .collect()
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

/// Header of `attainment.csv`.
pub const ATTAINMENT_HEADER: [&str; 15] = [
    "customer_id",
    "customer_name",
    "workload",
    "month",
    "mau",
    "pau",
    "pau_source",
    "attainment",
    "target_reached",
    "prior_hwm",
    "compensable_units",
    "source_file",
    "source_line",
    "date",
    "note",
];

fn opt(d: Option<Decimal>) -> String {
    d.map(|d| d.normalize().to_string()).unwrap_or_default()
}

fn n(d: Decimal) -> String {
    format_exact_dp(d, 0)
}

/// The columns of one attainment row (after any leading columns).
pub fn attainment_fields(name: &str, a: &Attainment) -> Vec<String> {
    vec![
        a.customer_id.clone(),
        name.to_string(),
        a.workload_name.clone(),
        a.month.to_string(),
        n(a.mau),
        n(a.pau),
        a.pau_source.as_str().to_string(),
        opt(a.attainment),
        a.target_reached.map(|t| t.to_string()).unwrap_or_default(),
        n(a.prior_hwm),
        n(a.compensable),
        a.source_file.clone(),
        a.line.to_string(),
        a.date.to_string(),
        if a.attainment.is_none() {
            "PAU 0: attainment not computable".into()
        } else {
            String::new()
        },
    ]
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> Fatal + '_ {
    move |e| Fatal::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Writes `attainment.csv`: every tenant, workload and month of the period,
/// sorted by customer, workload, month.
pub fn write_attainment(dir: &Path, inputs: &Inputs, period: Period) -> Result<(), Fatal> {
    let path = dir.join("attainment.csv");
    let err = csv_err(&path);
    let mut w = writer(Vec::new());
    row(&mut w, &ATTAINMENT_HEADER).map_err(&err)?;
    for a in inputs.attainment.rows.values() {
        if !period.contains(a.month.first_day()) {
            continue;
        }
        let name = inputs
            .usage
            .customer_names
            .get(&a.customer_id)
            .cloned()
            .unwrap_or_default();
        row(&mut w, &strs(&attainment_fields(&name, a))).map_err(&err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
        .map_err(&err)?;
    std::fs::write(&path, bytes).map_err(|e| Fatal::io(&path, e))
}

/// Appends the attainment section (and tier notes) to a partner statement CSV.
pub fn statement_sections(p: &crate::statements::PartnerStatement) -> csv::Result<Vec<u8>> {
    let mut out = Vec::new();
    if !p.attainment.is_empty() {
        out.extend_from_slice(b"\r\n");
        let mut w = writer(Vec::new());
        let mut h = vec!["attainment", "association"];
        h.extend(ATTAINMENT_HEADER);
        row(&mut w, &h)?;
        for l in &p.attainment {
            let mut f = vec!["attainment".to_string(), l.associations.clone()];
            f.extend(attainment_fields(&l.customer_name, &l.row));
            row(&mut w, &strs(&f))?;
        }
        out.extend(
            w.into_inner()
                .map_err(|e| csv::Error::from(e.into_error()))?,
        );
    }
    if !p.tier_notes.is_empty() {
        out.extend_from_slice(b"\r\n");
        let mut w = writer(Vec::new());
        row(
            &mut w,
            &[
                "tier_rate",
                "customer_id",
                "program_id",
                "product",
                "month",
                "workload_attainment",
                "decisive_attainment",
                "rate",
                "explanation",
            ],
        )?;
        for t in &p.tier_notes {
            let wl: Vec<String> = t
                .workloads
                .iter()
                .map(|(n, a)| {
                    format!(
                        "{n}={}",
                        a.map(|a| a.to_string()).unwrap_or_else(|| "n/a".into())
                    )
                })
                .collect();
            row(
                &mut w,
                &[
                    "tier_rate",
                    &t.customer_id,
                    &t.program_id,
                    &t.product,
                    &t.month.to_string(),
                    &wl.join(";"),
                    &opt(t.decisive),
                    &ratio(t.rate),
                    &t.explanation,
                ],
            )?;
        }
        out.extend(
            w.into_inner()
                .map_err(|e| csv::Error::from(e.into_error()))?,
        );
    }
    Ok(out)
}

/// Writes `partners/<id>/attainment.csv` for every partner with usage.
pub fn write_partner_attainment(
    dir: &Path,
    inputs: &Inputs,
    partners: &[PartnerUsage],
    period: Period,
) -> Result<(), Fatal> {
    let _ = inputs;
    for p in partners {
        let pdir = dir.join("partners").join(sanitize_file_name(&p.partner_id));
        std::fs::create_dir_all(&pdir).map_err(|e| Fatal::io(&pdir, e))?;
        let path = pdir.join("attainment.csv");
        let err = csv_err(&path);
        let mut buf = Vec::new();
        let mut section =
            |f: &mut dyn FnMut(&mut csv::Writer<Vec<u8>>) -> csv::Result<()>| -> Result<(), Fatal> {
                if !buf.is_empty() {
                    buf.extend_from_slice(b"\r\n");
                }
                let mut w = writer(Vec::new());
                f(&mut w).map_err(&err)?;
                buf.extend(
                    w.into_inner()
                        .map_err(|e| csv::Error::from(e.into_error()))
                        .map_err(&err)?,
                );
                Ok(())
            };
        section(&mut |w| {
            row(w, &["porledger partner attainment"])?;
            row(w, &["partner_id", &p.partner_id])?;
            row(w, &["partner_name", &p.partner_name])?;
            row(w, &["period", &period.label()])?;
            row(
                w,
                &[
                    "capability_points",
                    &p.capability_points.normalize().to_string(),
                ],
            )
        })?;
        section(&mut |w| {
            let mut h = vec!["association"];
            h.extend(ATTAINMENT_HEADER);
            row(w, &h)?;
            for l in &p.lines {
                let mut f = vec![l.associations.clone()];
                f.extend(attainment_fields(&l.customer_name, &l.row));
                row(w, &strs(&f))?;
            }
            Ok(())
        })?;
        section(&mut |w| {
            row(
                w,
                &[
                    "workload",
                    "workload_name",
                    "month",
                    "customers",
                    "seats",
                    "active",
                ],
            )?;
            for s in &p.workloads {
                row(
                    w,
                    &[
                        "workload",
                        &s.workload,
                        &s.month,
                        &s.customers.to_string(),
                        &n(s.seats),
                        &n(s.active),
                    ],
                )?;
            }
            Ok(())
        })?;
        section(&mut |w| {
            row(
                w,
                &[
                    "competency",
                    "workload",
                    "level",
                    "seats",
                    "seats_threshold",
                    "customers",
                    "customers_threshold",
                    "reached",
                ],
            )?;
            for c in &p.competencies {
                row(
                    w,
                    &[
                        "competency",
                        &c.workload,
                        &c.level,
                        &n(c.seats),
                        &c.seats_threshold.to_string(),
                        &c.customers.to_string(),
                        &c.customers_threshold.to_string(),
                        if c.reached { "yes" } else { "no" },
                    ],
                )?;
            }
            Ok(())
        })?;
        section(&mut |w| {
            row(
                w,
                &[
                    "capability",
                    "metric",
                    "associations",
                    "actual",
                    "threshold",
                    "max_points",
                    "points",
                    "detail",
                ],
            )?;
            for m in &p.capability {
                row(
                    w,
                    &[
                        "capability",
                        m.metric,
                        &m.associations,
                        &m.actual.normalize().to_string(),
                        &m.threshold.to_string(),
                        &m.max_points.to_string(),
                        &m.points.normalize().to_string(),
                        &m.detail,
                    ],
                )?;
            }
            Ok(())
        })?;
        std::fs::write(&path, buf).map_err(|e| Fatal::io(&path, e))?;
    }
    Ok(())
}

/// The usage part of `summary.json`.
#[derive(serde::Serialize)]
pub struct UsageJson {
    pub files: Vec<UsageCounts>,
    pub total: UsageCounts,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Association;

    fn dsg(share: Option<&str>) -> Designation {
        Designation {
            line: 2,
            customer_id: "c".into(),
            partner_id: "p".into(),
            partner_name: String::new(),
            association: Association::Cpor,
            workload: "teams".into(),
            subscription_id: None,
            share: share.map(|s| s.parse().unwrap()),
            valid_from: None,
            valid_to: None,
        }
    }

    #[test]
    fn shares_split_and_conflict() {
        let (a, b, c) = (dsg(None), dsg(None), dsg(None));
        let s = shares(&[&a, &b, &c]).unwrap();
        assert_eq!(s.iter().sum::<Decimal>(), Decimal::ONE);
        assert_eq!(s[0].to_string(), "0.3333333333");
        let x = dsg(Some("0.7"));
        assert_eq!(
            shares(&[&x, &a]).unwrap(),
            ["0.7".parse::<Decimal>().unwrap(), "0.3".parse().unwrap()]
        );
        let y = dsg(Some("0.5"));
        assert!(shares(&[&x, &y]).is_err());
        assert_eq!(shares(&[]).unwrap(), Vec::<Decimal>::new());
    }

    #[test]
    fn reasons_rank_from_far_to_close() {
        assert!(UsageReason::OutsidePeriod < UsageReason::NoDesignation);
        assert!(UsageReason::BeforeAssociation < UsageReason::BelowTarget);
        assert_eq!(UsageReason::ALL.len(), 11);
    }
}
