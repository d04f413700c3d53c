//! The usage parts of the rules: the `[usage]` settings (targets, competency
//! thresholds, capability score), a usage program's per-workload unit rates
//! and a revenue program's attainment tiers.

use rust_decimal::Decimal;

use super::products::{workload_display, workload_key};
use super::raw::{RawTier, RawUsage, RawWorkload};
use super::{invalid, Association, RulesError};
use crate::money::parse_rate;

/// A competency threshold (old Silver/Gold): seats and customers of a workload.
#[derive(Clone, Debug, PartialEq)]
pub struct Competency {
    pub workload: String,
    pub workload_name: String,
    pub level: String,
    pub seats: u64,
    pub customers: u64,
}

/// The capability-score customer-success metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    NetCustomerAdds,
    UsageGrowth,
    Deployments,
}

impl Metric {
    pub fn as_str(&self) -> &'static str {
        match self {
            Metric::NetCustomerAdds => "net-customer-adds",
            Metric::UsageGrowth => "usage-growth",
            Metric::Deployments => "deployments",
        }
    }
    fn parse(s: &str) -> Option<Metric> {
        [
            Metric::NetCustomerAdds,
            Metric::UsageGrowth,
            Metric::Deployments,
        ]
        .into_iter()
        .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// One scored metric: `min(max_points, actual / threshold * max_points)`.
#[derive(Clone, Debug, PartialEq)]
pub struct CapabilityMetric {
    pub metric: Metric,
    pub max_points: Decimal,
    pub threshold: Decimal,
    /// Which designations make a customer "held" for this metric.
    pub associations: Vec<Association>,
}

/// `[usage]`: settings for attainment and the partner-level metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageSettings {
    /// Attainment targets reported in `attainment.csv`, ascending.
    pub targets: Vec<Decimal>,
    /// Attainment from which a tenant counts as a deployment.
    pub deployment_target: Decimal,
    /// Look-back of net customer adds and usage growth.
    pub lookback_months: u32,
    pub competencies: Vec<Competency>,
    pub capability: Vec<CapabilityMetric>,
}

impl Default for UsageSettings {
    fn default() -> Self {
        UsageSettings {
            targets: vec![Decimal::new(15, 2), Decimal::new(40, 2)],
            deployment_target: Decimal::new(40, 2),
            lookback_months: 12,
            competencies: Vec::new(),
            capability: Vec::new(),
        }
    }
}

/// A usage program's rates for one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadRate {
    pub workload: String,
    pub workload_name: String,
    pub targets: Vec<Decimal>,
    /// Per compensable unit, by highest target reached (same length as targets).
    pub unit_rates: Vec<Decimal>,
    /// Per tenant and month.
    pub cap_units: Option<u64>,
}

/// A revenue program's rate by attainment.
#[derive(Clone, Debug, PartialEq)]
pub struct Tier {
    pub min_attainment: Decimal,
    pub rate: Decimal,
}

fn decimal(key: &str, s: &str) -> Result<Decimal, RulesError> {
    parse_rate(s).map_err(|_| invalid(key.into(), format!("'{s}' is not a decimal number")))
}

/// Parses an ascending list of attainment targets (each in `0 < t <= 1` ... or
/// above 1 for over-usage, never negative).
fn targets(key: &str, raw: &[String]) -> Result<Vec<Decimal>, RulesError> {
    if raw.is_empty() {
        return Err(invalid(key.into(), "must list at least one target"));
    }
    let mut out: Vec<Decimal> = Vec::new();
    for s in raw {
        let t = decimal(key, s)?;
        if t <= Decimal::ZERO {
            return Err(invalid(
                key.into(),
                format!("{t} must be above 0 (write 15% as \"0.15\")"),
            ));
        }
        if out.last().is_some_and(|l| *l >= t) {
            return Err(invalid(key.into(), "targets must be strictly ascending"));
        }
        out.push(t);
    }
    Ok(out)
}

/// Validates `[usage]` (before the programs: they default to its targets).
pub fn usage_settings(raw: Option<RawUsage>) -> Result<UsageSettings, RulesError> {
    let mut s = UsageSettings::default();
    let Some(raw) = raw else {
        return Ok(s);
    };
    if let Some(t) = &raw.targets {
        s.targets = targets("usage.targets", t)?;
    }
    if let Some(d) = &raw.deployment_target {
        s.deployment_target = decimal("usage.deployment_target", d)?;
        if s.deployment_target <= Decimal::ZERO {
            return Err(invalid(
                "usage.deployment_target".into(),
                "must be above 0 (write 40% as \"0.40\")",
            ));
        }
    }
    if let Some(m) = raw.lookback_months {
        if m == 0 {
            return Err(invalid(
                "usage.lookback_months".into(),
                "must be at least 1",
            ));
        }
        s.lookback_months = m;
    }
    for (j, c) in raw.competency.into_iter().enumerate() {
        let key = |k: &str| format!("usage.competency[{j}].{k}");
        if c.workload.trim().is_empty() {
            return Err(invalid(key("workload"), "is empty"));
        }
        if c.level.trim().is_empty() {
            return Err(invalid(key("level"), "is empty"));
        }
        s.competencies.push(Competency {
            workload: workload_key(&c.workload),
            workload_name: workload_display(&c.workload),
            level: c.level.trim().to_string(),
            seats: c.seats,
            customers: c.customers,
        });
    }
    for (j, c) in raw.capability.into_iter().enumerate() {
        let key = |k: &str| format!("usage.capability[{j}].{k}");
        let metric = Metric::parse(&c.metric).ok_or_else(|| {
            invalid(
                key("metric"),
                format!(
                    "unknown metric '{}' (expected net-customer-adds, usage-growth or deployments)",
                    c.metric
                ),
            )
        })?;
        if s.capability.iter().any(|m| m.metric == metric) {
            return Err(invalid(
                key("metric"),
                format!("'{}' is defined twice", metric.as_str()),
            ));
        }
        if c.threshold == 0 {
            return Err(invalid(key("threshold"), "must be at least 1"));
        }
        let mut associations = Vec::new();
        for a in c.associations.unwrap_or_else(|| vec!["CPOR".into()]) {
            let a = Association::parse(&a)
                .filter(|a| matches!(a, Association::Cpor | Association::Dpor | Association::Por))
                .ok_or_else(|| {
                    invalid(
                        key("associations"),
                        format!("'{a}' is not one of CPOR, DPOR, POR"),
                    )
                })?;
            if !associations.contains(&a) {
                associations.push(a);
            }
        }
        associations.sort();
        s.capability.push(CapabilityMetric {
            metric,
            max_points: Decimal::from(c.max_points),
            threshold: Decimal::from(c.threshold),
            associations,
        });
    }
    s.capability.sort_by_key(|m| m.metric);
    Ok(s)
}

/// Validates the `[[program.workload]]` unit rates of usage program `i`.
pub(super) fn workload_rates(
    i: usize,
    workload: Vec<RawWorkload>,
    default_targets: &[Decimal],
) -> Result<Vec<WorkloadRate>, RulesError> {
    let mut out: Vec<WorkloadRate> = Vec::new();
    for (j, w) in workload.into_iter().enumerate() {
        let wkey = |k: &str| format!("program[{i}].workload[{j}].{k}");
        if w.name.trim().is_empty() {
            return Err(invalid(wkey("name"), "is empty"));
        }
        let wk = workload_key(&w.name);
        if out.iter().any(|x| x.workload == wk) {
            return Err(invalid(
                wkey("name"),
                format!("workload '{}' is listed twice", w.name),
            ));
        }
        let t = match &w.targets {
            Some(t) => targets(&wkey("targets"), t)?,
            None => default_targets.to_vec(),
        };
        let mut rates = Vec::new();
        for r in &w.unit_rates {
            let r = decimal(&wkey("unit_rates"), r)?;
            if r.is_sign_negative() {
                return Err(invalid(wkey("unit_rates"), format!("{r} is negative")));
            }
            rates.push(r);
        }
        if rates.len() != t.len() {
            return Err(invalid(
                wkey("unit_rates"),
                format!(
                    "has {} rates for {} targets: give one rate per target",
                    rates.len(),
                    t.len()
                ),
            ));
        }
        out.push(WorkloadRate {
            workload: wk,
            workload_name: workload_display(&w.name),
            targets: t,
            unit_rates: rates,
            cap_units: w.cap_units,
        });
    }
    Ok(out)
}

/// Validates the attainment `tiers` of revenue program `i`.
pub(super) fn tiers(i: usize, raw: Vec<RawTier>) -> Result<Vec<Tier>, RulesError> {
    let mut out: Vec<Tier> = Vec::new();
    for (j, t) in raw.into_iter().enumerate() {
        let tkey = |k: &str| format!("program[{i}].tiers[{j}].{k}");
        let min = decimal(&tkey("min_attainment"), &t.min_attainment)?;
        if min.is_sign_negative() {
            return Err(invalid(tkey("min_attainment"), "is negative"));
        }
        if out.last().is_some_and(|l| l.min_attainment >= min) {
            return Err(invalid(
                tkey("min_attainment"),
                "tiers must be in strictly ascending min_attainment order",
            ));
        }
        let rate = decimal(&tkey("rate"), &t.rate)?;
        if rate.is_sign_negative() || rate > Decimal::ONE {
            return Err(invalid(
                tkey("rate"),
                format!("{rate} is outside 0..=1 (write 2% as \"0.02\")"),
            ));
        }
        out.push(Tier {
            min_attainment: min,
            rate,
        });
    }
    Ok(out)
}
