//! Attainment: usage per customer tenant, workload and month, measured against
//! paid seats, the prior high-water mark and the rules' targets; the revenue
//! tier rate it decides; and the partner-level metrics (competency seats and
//! customers, capability-score customer success).
//!
//! ```text
//!  usage files ──▶ observations ──(latest report per tenant/workload/month)──▶ AttainmentTable
//!  billing lines (pipeline pre-pass, only for Graph rows) ──▶ add_paid_seats ──┘  │
//!        accrue.rs (tiered rate, + a TierNote kept by the caller) ◀── rate_for ────┤
//!        accrue_observation (unit rates) ◀─────────────────────────────────────────┤
//!        statements (attainment section), partners/<id>/attainment.csv ◀── partner_usage
//! ```
//! Everything here is exact [`Decimal`]; nothing is rounded. Nothing here reads
//! files or keeps state between calls: the engine ([`crate::pipeline`]) reads
//! the usage and billing files, and `rate_for` adds its tier decisions to the
//! caller's [`TierNotes`] (a worker's, merged in the fold).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::attribute::DesignationIndex;
use crate::config::{product_for, workload_key, Month};
use crate::config::{Association, CapabilityMetric, Metric, Program, Rules, UsageSettings};
use crate::dates::Period;
use crate::ingest::designations::Designation;
use crate::ingest::usage::UsageInput;
use crate::ingest::BillingLine;
use crate::model::TierKey;
pub use crate::model::{Attainment, AttainmentLine, PauSource, TierNote, TierNotes};

/// The index of the highest target reached (`attainment >= target`).
pub fn highest_target(attainment: Option<Decimal>, targets: &[Decimal]) -> Option<usize> {
    let a = attainment?;
    targets.iter().rposition(|t| a >= *t)
}

/// `MAU / PAU`, or `None` when PAU is not positive.
pub fn ratio(mau: Decimal, pau: Decimal) -> Option<Decimal> {
    (pau > Decimal::ZERO).then(|| (mau / pau).normalize())
}

/// Every attainment row, keyed by (customer, workload key, month).
#[derive(Debug, Default)]
pub struct AttainmentTable {
    pub rows: BTreeMap<(String, String, Month), Attainment>,
    /// Observation index -> the observation that replaced it (a later report).
    pub superseded: HashMap<usize, usize>,
    /// Observation index -> row key, for the winning observations.
    pub winner_of: HashMap<usize, (String, String, Month)>,
}

impl AttainmentTable {
    pub fn get(&self, customer: &str, workload: &str, month: Month) -> Option<&Attainment> {
        self.rows
            .get(&(customer.to_string(), workload.to_string(), month))
    }

    /// Builds the table from usage observations. `billing_pau` gives paid
    /// seats for observations without them (Graph exports).
    ///
    /// `closed` holds the monthly active users of closed months (`--history`):
    /// a month's prior high-water mark is the highest MAU of the earlier months
    /// in the usage files and in `closed`, so a monthly run needs only its own
    /// month's usage file.
    pub fn build(
        usage: &UsageInput,
        billing_pau: &HashMap<(String, String, Month), Decimal>,
        targets: &[Decimal],
        closed: &ClosedMarks,
    ) -> AttainmentTable {
        let mut t = AttainmentTable::default();
        // The latest report (by date, then input order) per tenant/workload/month wins.
        let mut best: BTreeMap<(String, String, Month), usize> = BTreeMap::new();
        for (i, o) in usage.obs.iter().enumerate() {
            let k = (o.customer_id.clone(), o.workload.clone(), o.month);
            match best.get(&k) {
                Some(&j) if usage.obs[j].date > o.date => {
                    t.superseded.insert(i, j);
                }
                Some(&j) => {
                    t.superseded.insert(j, i);
                    best.insert(k, i);
                }
                None => {
                    best.insert(k, i);
                }
            }
        }
        // Re-point chains (a superseded by b, b by c) at the final winner.
        let keys: Vec<usize> = t.superseded.keys().copied().collect();
        for i in keys {
            let mut w = t.superseded[&i];
            while let Some(&n) = t.superseded.get(&w) {
                w = n;
            }
            t.superseded.insert(i, w);
        }
        let mut hwm: Option<(String, String, Decimal)> = None;
        for (k, &i) in &best {
            let o = &usage.obs[i];
            let (pau, src) = match o.pau {
                Some(p) => (p, PauSource::Report),
                None => (
                    billing_pau
                        .get(k)
                        .copied()
                        .unwrap_or_default()
                        .max(Decimal::ZERO),
                    PauSource::Billing,
                ),
            };
            let prior = match &hwm {
                Some((c, w, h)) if *c == k.0 && *w == k.1 => *h,
                _ => Decimal::ZERO,
            }
            .max(closed.highest_before(&k.0, &k.1, k.2));
            let attainment = ratio(o.mau, pau);
            let compensable = (o.mau.min(pau) - prior).max(Decimal::ZERO);
            t.rows.insert(
                k.clone(),
                Attainment {
                    customer_id: k.0.clone(),
                    workload: k.1.clone(),
                    workload_name: o.workload_name.clone(),
                    month: k.2,
                    date: o.date,
                    mau: o.mau,
                    pau,
                    pau_source: src,
                    attainment,
                    target_reached: highest_target(attainment, targets).map(|i| targets[i]),
                    prior_hwm: prior,
                    compensable,
                    source_file: usage
                        .files
                        .get(o.file)
                        .map(|f| f.input.display.clone())
                        .unwrap_or_default(),
                    line: o.line,
                },
            );
            t.winner_of.insert(i, k.clone());
            hwm = Some((k.0.clone(), k.1.clone(), prior.max(o.mau)));
        }
        t
    }
}

/// The monthly active users of closed months, from the history: by tenant and
/// workload key, `(month, MAU)` pairs.
#[derive(Clone, Debug, Default)]
pub struct ClosedMarks(BTreeMap<(String, String), Vec<(Month, Decimal)>>);

impl ClosedMarks {
    /// Records the MAU of `tenant` (an ID key) and workload (any spelling) in `month`.
    pub fn insert(&mut self, tenant: &str, workload: &str, month: Month, mau: Decimal) {
        let key = (
            crate::ingest::id_key(tenant),
            crate::config::products::workload_key(workload),
        );
        self.0.entry(key).or_default().push((month, mau));
    }

    /// The highest MAU recorded for `tenant` and `workload` (keys) before `month`
    /// (zero when none).
    pub fn highest_before(&self, tenant: &str, workload: &str, month: Month) -> Decimal {
        if self.0.is_empty() {
            return Decimal::ZERO;
        }
        self.0
            .get(&(tenant.to_string(), workload.to_string()))
            .into_iter()
            .flatten()
            .filter(|(m, _)| *m < month)
            .map(|(_, mau)| *mau)
            .fold(Decimal::ZERO, Decimal::max)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The rate of `p` for a billing line: `p.rate`, unless the program has tiers.
/// With tiers, the charged product's workloads (rules' product table) decide:
/// the lowest attainment of the charge month among them picks the highest tier
/// whose `min_attainment` it reaches; not computable, no tier reached, or a
/// product outside the table -> `p.rate` (0 when the program gives none).
pub fn rate_for(
    p: &Program,
    program_index: usize,
    rules: &Rules,
    line: &BillingLine<'_>,
    customer_key: &str,
    table: Option<&AttainmentTable>,
    notes: &mut TierNotes,
) -> Decimal {
    if p.tiers().is_empty() {
        return p.rate;
    }
    let Some(prod) = product_for(&rules.products, &[line.product_name, line.product_id]) else {
        return p.rate;
    };
    let month = Month::of(line.charge_start);
    let workloads: Vec<(String, Option<Decimal>)> = prod
        .workloads
        .iter()
        .zip(&prod.workload_names)
        .map(|(w, n)| {
            (
                n.clone(),
                table
                    .and_then(|t| t.get(customer_key, w, month))
                    .and_then(|a| a.attainment),
            )
        })
        .collect();
    let decisive = if workloads.iter().any(|w| w.1.is_none()) {
        None
    } else {
        workloads.iter().filter_map(|w| w.1).min()
    };
    let tier = decisive.and_then(|a| p.tiers().iter().rev().find(|t| a >= t.min_attainment));
    let rate = tier.map(|t| t.rate).unwrap_or(p.rate);
    if table.is_some() {
        let key: TierKey = (
            customer_key.to_string(),
            program_index as u32,
            prod.matches.clone(),
            month,
        );
        notes.0.entry(key).or_insert_with(|| {
            let lowest = workloads
                .iter()
                .filter(|w| w.1 == decisive || w.1.is_none())
                .map(|w| w.0.as_str())
                .next()
                .unwrap_or("");
            let several = workloads.len() > 1;
            let mut explanation = match decisive {
                None => format!(
                    "attainment of {lowest} in {month} not computable (no usage row or PAU 0)"
                ),
                Some(a) if several => {
                    format!("lowest attainment of the product's workloads: {lowest} {a}")
                }
                Some(a) => format!("attainment of {lowest}: {a}"),
            };
            match tier {
                Some(t) => explanation.push_str(&format!(
                    "; tier min_attainment {} reached: rate {}",
                    t.min_attainment, t.rate
                )),
                None => explanation.push_str(&format!("; no tier reached: base rate {}", p.rate)),
            }
            TierNote {
                customer_id: customer_key.to_string(),
                program_id: p.id.clone(),
                product: prod.matches.clone(),
                month,
                workloads: workloads.clone(),
                decisive,
                rate,
                explanation,
            }
        });
    }
    rate
}

/// Paid seats per (customer, workload, month), from billing lines.
pub type PaidSeats = HashMap<(String, String, Month), Decimal>;

/// Adds one billing line's paid seats to `out`: the signed `Quantity`
/// (negative when the line's Subtotal is negative) of a charge of a product in
/// the rules' product table (by ProductName, SkuName or ProductId), counted in
/// each month whose last day the charge covers (`ChargeStartDate <= last day
/// <= ChargeEndDate`; a charge without end date counts in its start month).
/// The billing files are read by [`crate::pipeline::billing_pau`].
pub fn add_paid_seats(
    out: &mut PaidSeats,
    rules: &Rules,
    line: &BillingLine<'_>,
    sku: &str,
    quantity: Decimal,
) {
    let Some(prod) = product_for(&rules.products, &[line.product_name, sku, line.product_id])
    else {
        return;
    };
    let q = if line.subtotal.is_sign_negative() && !line.subtotal.is_zero() {
        -quantity.abs()
    } else {
        quantity.abs()
    };
    let ckey = crate::ingest::id_key(line.customer_id);
    let first = Month::of(line.charge_start);
    let months: Vec<Month> = match line.charge_end {
        None => vec![first],
        Some(end) => {
            let mut v = Vec::new();
            let mut m = first;
            while m <= Month::of(end) {
                if line.charge_start <= m.last_day() && m.last_day() <= end {
                    v.push(m);
                }
                m = m.next();
            }
            v
        }
    };
    for m in months {
        for w in &prod.workloads {
            *out.entry((ckey.clone(), w.clone(), m)).or_default() += q;
        }
    }
}

/// Does designation `d` give its partner `workload` of its customer in `month`?
/// CPOR: the designation's workload (empty = every workload); DPOR and POR:
/// every workload of the customer. The designation must overlap the month.
pub fn holds(d: &Designation, workload: &str, month: Month) -> bool {
    matches!(
        d.association,
        Association::Cpor | Association::Dpor | Association::Por
    ) && (d.workload.is_empty() || workload_key(&d.workload) == workload)
        && d.valid_from.is_none_or(|f| f <= month.last_day())
        && d.valid_to.is_none_or(|t| t > month.first_day())
}

/// Seats and customers of one workload for one partner.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WorkloadSeats {
    pub workload: String,
    pub month: String,
    pub customers: u64,
    #[serde(with = "rust_decimal::serde::str")]
    pub seats: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub active: Decimal,
}

/// One competency threshold, met or not.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CompetencyResult {
    pub workload: String,
    pub level: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub seats: Decimal,
    pub seats_threshold: u64,
    pub customers: u64,
    pub customers_threshold: u64,
    pub reached: bool,
}

/// One capability-score metric.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MetricScore {
    pub metric: &'static str,
    pub associations: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub actual: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub threshold: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub max_points: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub points: Decimal,
    pub detail: String,
}

/// Everything usage-related about one partner for the period.
#[derive(Clone, Debug, PartialEq)]
pub struct PartnerUsage {
    pub partner_id: String,
    pub partner_name: String,
    pub lines: Vec<AttainmentLine>,
    pub workloads: Vec<WorkloadSeats>,
    pub competencies: Vec<CompetencyResult>,
    pub capability: Vec<MetricScore>,
    pub capability_points: Decimal,
}

/// `min(max_points, max(0, actual) / threshold * max_points)`.
pub fn score(actual: Decimal, threshold: Decimal, max_points: Decimal) -> Decimal {
    if threshold <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    (actual.max(Decimal::ZERO) / threshold * max_points)
        .min(max_points)
        .normalize()
}

fn customers_held(ds: &[&Designation], assoc: &[Association], day: NaiveDate) -> BTreeSet<String> {
    ds.iter()
        .filter(|d| assoc.contains(&d.association) && d.valid_on(day))
        .map(|d| d.customer_id.clone())
        .collect()
}

/// What [`partner_usage`] reads: the attainment table, the designations, the
/// customers' names from the usage files and the `[usage]` settings.
pub struct UsageView<'a> {
    pub table: &'a AttainmentTable,
    pub designations: &'a DesignationIndex,
    pub customer_names: &'a BTreeMap<String, String>,
    pub settings: &'a UsageSettings,
}

/// The usage view of every partner that holds a tenant-workload with usage data,
/// for `period` (metrics as of the period's last month).
pub fn partner_usage(v: &UsageView<'_>, period: Period) -> Vec<PartnerUsage> {
    let last = Month::of(period.last_day());
    let first = Month::of(period.start);
    let mut by_partner: BTreeMap<&str, Vec<&Designation>> = BTreeMap::new();
    let usage_customers: BTreeSet<&str> = v.table.rows.keys().map(|k| k.0.as_str()).collect();
    for d in v.designations.rows() {
        if matches!(
            d.association,
            Association::Cpor | Association::Dpor | Association::Por
        ) && usage_customers.contains(d.customer_id.as_str())
        {
            by_partner.entry(&d.partner_id).or_default().push(d);
        }
    }
    let mut out = Vec::new();
    for (pid, ds) in by_partner {
        let lines = attainment_lines(v, &ds, first, last);
        let seats = workload_seats(&lines, last);
        let competencies = v
            .settings
            .competencies
            .iter()
            .map(|c| {
                let (s, n) = seats
                    .get(c.workload.as_str())
                    .map(|w| (w.seats, w.customers))
                    .unwrap_or_default();
                CompetencyResult {
                    workload: c.workload_name.clone(),
                    level: c.level.clone(),
                    seats: s,
                    seats_threshold: c.seats,
                    customers: n,
                    customers_threshold: c.customers,
                    reached: s >= Decimal::from(c.seats) && n >= c.customers,
                }
            })
            .collect();
        let capability: Vec<MetricScore> = v
            .settings
            .capability
            .iter()
            .map(|m| metric_score(v, &ds, m, last))
            .collect();
        let capability_points = capability.iter().map(|m| m.points).sum();
        let workloads: Vec<WorkloadSeats> = seats.into_values().collect();
        out.push(PartnerUsage {
            partner_id: pid.to_string(),
            partner_name: v
                .designations
                .partner_names()
                .get(pid)
                .cloned()
                .unwrap_or_default(),
            lines,
            workloads,
            competencies,
            capability,
            capability_points,
        });
    }
    out
}

/// The attainment rows of the months `first..=last` of the tenant-workloads a
/// partner (designations `ds`) holds.
fn attainment_lines(
    v: &UsageView<'_>,
    ds: &[&Designation],
    first: Month,
    last: Month,
) -> Vec<AttainmentLine> {
    let mut lines = Vec::new();
    let customers: BTreeSet<&str> = ds.iter().map(|d| d.customer_id.as_str()).collect();
    for c in &customers {
        let lo = (c.to_string(), String::new(), Month(i32::MIN));
        for ((rc, w, m), row) in v.table.rows.range(lo..) {
            if rc != c {
                break;
            }
            if *m < first || *m > last {
                continue;
            }
            let mut assoc: Vec<&str> = ds
                .iter()
                .filter(|d| d.customer_id == *rc && holds(d, w, *m))
                .map(|d| d.association.as_str())
                .collect();
            assoc.sort();
            assoc.dedup();
            if assoc.is_empty() {
                continue;
            }
            lines.push(AttainmentLine {
                customer_id: rc.clone(),
                customer_name: v.customer_names.get(rc).cloned().unwrap_or_default(),
                associations: assoc.join("+"),
                row: row.clone(),
            });
        }
    }
    lines
}

/// Seats per workload (by workload key): each tenant's latest month within
/// the period.
fn workload_seats(lines: &[AttainmentLine], last: Month) -> BTreeMap<&str, WorkloadSeats> {
    let mut latest: BTreeMap<(&str, &str), &AttainmentLine> = BTreeMap::new();
    for l in lines {
        latest.insert((&l.row.workload, &l.customer_id), l);
    }
    let mut seats: BTreeMap<&str, WorkloadSeats> = BTreeMap::new();
    for l in latest.into_values() {
        let e = seats
            .entry(l.row.workload.as_str())
            .or_insert_with(|| WorkloadSeats {
                workload: l.row.workload_name.clone(),
                month: last.to_string(),
                customers: 0,
                seats: Decimal::ZERO,
                active: Decimal::ZERO,
            });
        if l.row.pau > Decimal::ZERO {
            e.customers += 1;
        }
        e.seats += l.row.pau;
        e.active += l.row.mau;
    }
    seats
}

/// One capability-score metric of a partner (designations `ds`) as of `last`.
fn metric_score(
    v: &UsageView<'_>,
    ds: &[&Designation],
    m: &CapabilityMetric,
    last: Month,
) -> MetricScore {
    let day = last.last_day();
    let back = last.minus(v.settings.lookback_months);
    let assoc_s: Vec<&str> = m.associations.iter().map(|a| a.as_str()).collect();
    let held_now = customers_held(ds, &m.associations, day);
    // Does one of the partner's designations of the metric's associations
    // give it this tenant-workload now?
    let holds_now = |c: &str, w: &str| {
        ds.iter().any(|d| {
            d.customer_id == c
                && m.associations.contains(&d.association)
                && d.valid_on(day)
                && holds(d, w, last)
        })
    };
    let (actual, detail) = match m.metric {
        Metric::NetCustomerAdds => {
            let before = customers_held(ds, &m.associations, back.last_day());
            let now = Decimal::from(held_now.len() as u64);
            let then = Decimal::from(before.len() as u64);
            (
                now - then,
                format!(
                    "{} customers on {day} minus {} on {}",
                    held_now.len(),
                    before.len(),
                    back.last_day()
                ),
            )
        }
        Metric::UsageGrowth => {
            let mut total = Decimal::ZERO;
            let mut n = 0;
            for ((c, w, mo), row) in &v.table.rows {
                if *mo != last || !held_now.contains(c) || !holds_now(c, w) {
                    continue;
                }
                let start = ds
                    .iter()
                    .filter(|d| {
                        d.customer_id == *c
                            && m.associations.contains(&d.association)
                            && d.valid_on(day)
                            && holds(d, w, last)
                    })
                    .map(|d| d.valid_from.map(Month::of).unwrap_or(Month(i32::MIN)))
                    .min()
                    .unwrap_or(Month(i32::MIN));
                let base_month = back.max(start);
                let base = v
                    .table
                    .rows
                    .range((c.clone(), w.clone(), base_month)..(c.clone(), w.clone(), last))
                    .next()
                    .map(|(_, r)| r.mau)
                    .unwrap_or(row.mau);
                total += row.mau - base;
                n += 1;
            }
            (
                total,
                format!(
                    "MAU in {last} minus {back} (or the association's first month) over {n} tenant-workloads"
                ),
            )
        }
        Metric::Deployments => {
            let target = v.settings.deployment_target;
            let deployed: BTreeSet<&str> = v
                .table
                .rows
                .iter()
                .filter(|((c, w, mo), r)| {
                    *mo == last
                        && held_now.contains(c)
                        && r.attainment.is_some_and(|a| a >= target)
                        && holds_now(c, w)
                })
                .map(|((c, _, _), _)| c.as_str())
                .collect();
            (
                Decimal::from(deployed.len() as u64),
                format!("tenants with a workload at >= {target} of paid seats active in {last}"),
            )
        }
    };
    MetricScore {
        metric: m.metric.as_str(),
        associations: assoc_s.join("+"),
        actual,
        threshold: m.threshold,
        max_points: m.max_points,
        points: score(actual, m.threshold, m.max_points),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::usage::UsageObs;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn obs(line: u64, month: u32, mau: &str, pau: Option<&str>) -> UsageObs {
        let date = NaiveDate::from_ymd_opt(2026, month, 1).unwrap();
        UsageObs {
            file: 0,
            line,
            customer_id: "t1".into(),
            workload: "teams".into(),
            workload_name: "Teams".into(),
            date,
            month: Month::of(date),
            mau: d(mau),
            pau: pau.map(d),
        }
    }

    #[test]
    fn targets_are_reached_on_the_boundary() {
        let t = [d("0.15"), d("0.40")];
        assert_eq!(highest_target(ratio(d("15"), d("100")), &t), Some(0));
        assert_eq!(highest_target(ratio(d("14"), d("100")), &t), None);
        assert_eq!(highest_target(ratio(d("40"), d("100")), &t), Some(1));
        assert_eq!(highest_target(ratio(d("39"), d("100")), &t), Some(0));
        assert_eq!(highest_target(ratio(d("6"), d("40")), &t), Some(0));
        assert_eq!(ratio(d("5"), d("0")), None);
    }

    #[test]
    fn closed_marks_give_the_highest_mau_before_a_month_by_key() {
        let mut c = ClosedMarks::default();
        c.insert(
            "TENANT-1",
            "Exchange Online",
            Month::from_ym(2026, 8),
            d("70"),
        );
        c.insert("tenant-1", "exchange", Month::from_ym(2026, 9), d("50"));
        c.insert("tenant-1", "Teams", Month::from_ym(2026, 7), d("90"));
        let ex = crate::config::products::workload_key("Exchange");
        assert_eq!(
            c.highest_before("tenant-1", &ex, Month::from_ym(2026, 10)),
            d("70")
        );
        assert_eq!(
            c.highest_before("tenant-1", &ex, Month::from_ym(2026, 9)),
            d("70")
        );
        assert_eq!(
            c.highest_before("tenant-1", &ex, Month::from_ym(2026, 8)),
            d("0")
        );
        assert_eq!(
            c.highest_before("tenant-2", &ex, Month::from_ym(2026, 10)),
            d("0")
        );
    }

    #[test]
    fn hwm_compensable_supersede_and_billing_pau() {
        let u = UsageInput {
            obs: vec![
                obs(2, 1, "30", Some("100")),
                obs(3, 2, "50", Some("100")),
                obs(4, 3, "45", Some("100")),
                obs(5, 4, "120", Some("100")),
                obs(6, 4, "80", Some("100")), // same date, later line: replaces line 5
                obs(7, 5, "90", None),
            ],
            ..UsageInput::default()
        };
        let mut pau = HashMap::new();
        pau.insert(
            (
                "t1".into(),
                "teams".into(),
                Month::of(NaiveDate::from_ymd_opt(2026, 5, 1).unwrap()),
            ),
            d("200"),
        );
        let t = AttainmentTable::build(&u, &pau, &[d("0.15"), d("0.40")], &ClosedMarks::default());
        let rows: Vec<(String, String, String, String)> = t
            .rows
            .values()
            .map(|r| {
                (
                    r.month.to_string(),
                    r.prior_hwm.to_string(),
                    r.compensable.to_string(),
                    r.target_reached.map(|x| x.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("2026-01".into(), "0".into(), "30".into(), "0.15".into()),
                ("2026-02".into(), "30".into(), "20".into(), "0.40".into()),
                ("2026-03".into(), "50".into(), "0".into(), "0.40".into()),
                ("2026-04".into(), "50".into(), "30".into(), "0.40".into()),
                ("2026-05".into(), "80".into(), "10".into(), "0.40".into()),
            ]
        );
        assert_eq!(t.superseded.get(&3), Some(&4));
        let may = t.rows.values().last().unwrap();
        assert_eq!((may.pau, may.pau_source), (d("200"), PauSource::Billing));
    }

    #[test]
    fn tier_rate_uses_the_lowest_workload_and_reaches_on_the_boundary() {
        let rules = crate::config::parse_rules(
            r#"
[[program]]
id = "t"
associations = ["DPOR"]
rate = "0.01"
tiers = [{ min_attainment = "0.15", rate = "0.02" }, { min_attainment = "0.40", rate = "0.05" }]
[[product]]
match = "M365 E3"
workloads = ["Exchange", "Teams"]
"#,
        )
        .unwrap();
        let mk = |w: &str, mau: &str, pau: &str| UsageObs {
            workload: w.into(),
            workload_name: w.into(),
            mau: d(mau),
            pau: Some(d(pau)),
            ..obs(2, 10, "0", None)
        };
        let line = |name: &'static str| BillingLine {
            customer_id: "T1",
            customer_name: "",
            subscription_id: "s",
            charge_start: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            charge_end: None,
            subtotal: d("100"),
            currency: crate::money::Currency::parse("EUR").unwrap(),
            mpn_id: None,
            reseller_mpn_id: None,
            publisher: "",
            qualifiers: "",
            charge_type: "",
            product_id: "",
            product_name: name,
            reference_id: "",
            sku_id: None,
            invoice_number: "",
            entitlement_id: None,
            syndication_id: None,
            billable_quantity: None,
            tax: false,
        };
        let rate = |ex: &str, te: &str, product: &'static str| {
            let u = UsageInput {
                obs: vec![mk("exchange", ex, "100"), mk("teams", te, "100")],
                ..UsageInput::default()
            };
            let t = AttainmentTable::build(
                &u,
                &HashMap::new(),
                &[d("0.15"), d("0.40")],
                &ClosedMarks::default(),
            );
            let p = &rules.programs[0];
            let mut notes = TierNotes::default();
            (
                rate_for(p, 0, &rules, &line(product), "t1", Some(&t), &mut notes),
                notes.to_vec(),
            )
        };
        assert_eq!(
            rate("90", "40", "m365 e3").0,
            d("0.05"),
            "0.40 reaches 0.40"
        );
        assert_eq!(rate("90", "39", "M365 E3").0, d("0.02"));
        assert_eq!(
            rate("15", "90", "M365 E3").0,
            d("0.02"),
            "0.15 reaches 0.15"
        );
        let (r, notes) = rate("14", "90", "M365 E3");
        assert_eq!(r, d("0.01"), "below every tier: the base rate");
        assert!(
            notes[0].explanation.contains("lowest attainment"),
            "{notes:?}"
        );
        assert!(notes[0].explanation.contains("Exchange 0.14"), "{notes:?}");
        assert_eq!(rate("90", "90", "Other product").0, d("0.01"));
    }

    #[test]
    fn scores() {
        assert_eq!(score(d("7"), d("10"), d("20")), d("14"));
        assert_eq!(score(d("30"), d("10"), d("20")), d("20"));
        assert_eq!(score(d("-3"), d("10"), d("20")), d("0"));
    }
}
