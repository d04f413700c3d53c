//! The usage parts of the rules file: the product-to-workload table, the
//! `[usage]` settings (targets, competency thresholds, capability score), and
//! the per-program `[[program.workload]]` unit rates and revenue `tiers`.
//!
//! Kept apart from [`crate::rules`] so that the base rules stay small; the
//! base parser calls [`program_ext`] and [`rules_ext`] for the new keys.
//! Also home of the workload name normaliser [`workload_key`]; [`Month`] is
//! re-exported from [`crate::dates`].

use rust_decimal::Decimal;
use serde::Deserialize;

pub use crate::dates::Month;
use crate::money::{parse_rate, Currency};
use crate::rules::{Association, Basis, RulesError};

/// Known workloads: normalised spellings -> display name.
const WORKLOADS: [(&[&str], &str); 10] = [
    (&["exchange", "exchangeonline"], "Exchange"),
    (&["sharepoint", "sharepointonline"], "SharePoint"),
    (&["onedrive", "onedriveforbusiness"], "OneDrive"),
    (&["teams", "microsoftteams"], "Teams"),
    (&["yammer", "vivaengage"], "Yammer"),
    (
        &["skypeforbusiness", "skypeforbusinessonline", "skype"],
        "Skype For Business",
    ),
    (
        &["office365", "microsoft365", "m365apps", "office"],
        "Office 365",
    ),
    (&["intune", "microsoftintune"], "Intune"),
    (
        &["entraid", "azureactivedirectory", "azuread", "aad"],
        "Entra ID",
    ),
    (&["defender", "microsoftdefender"], "Defender"),
];

fn squash(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(|c| c.to_lowercase())
        .collect()
}

/// The comparison key of a workload name: `Exchange Online`, `exchange` and
/// `EXCHANGE` are the same workload. Unknown names compare by their letters
/// and digits, case-insensitively.
pub fn workload_key(name: &str) -> String {
    let s = squash(name);
    for (aliases, display) in WORKLOADS {
        if aliases.contains(&s.as_str()) {
            return squash(display);
        }
    }
    s
}

/// The display name of a workload (`exchange online` -> `Exchange`); unknown
/// names are kept as written (trimmed).
pub fn workload_display(name: &str) -> String {
    let s = squash(name);
    for (aliases, display) in WORKLOADS {
        if aliases.contains(&s.as_str()) {
            return display.to_string();
        }
    }
    name.trim().to_string()
}

/// One `[[product]]` row: a product (name, SKU name or ID) and its workloads.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductMap {
    /// As written; matched case-insensitively (whole value, trimmed).
    pub matches: String,
    /// Workload keys ([`workload_key`]).
    pub workloads: Vec<String>,
    /// Display names, same order.
    pub workload_names: Vec<String>,
}

impl ProductMap {
    pub fn hits(&self, value: &str) -> bool {
        !value.is_empty() && value.trim().eq_ignore_ascii_case(self.matches.trim())
    }
}

/// The first product row matching any of the values (in rules order).
pub fn product_for<'r>(products: &'r [ProductMap], values: &[&str]) -> Option<&'r ProductMap> {
    products.iter().find(|p| values.iter().any(|v| p.hits(v)))
}

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

/// What the usage keys add to one program.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProgramExt {
    pub workloads: Vec<WorkloadRate>,
    pub tiers: Vec<Tier>,
    /// Currency of usage accruals (unit rates); `None` for revenue programs.
    pub currency: Option<Currency>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProduct {
    #[serde(rename = "match")]
    matches: String,
    workloads: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    deployment_target: Option<String>,
    #[serde(default)]
    lookback_months: Option<u32>,
    #[serde(default)]
    competency: Vec<RawCompetency>,
    #[serde(default)]
    capability: Vec<RawCapability>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCompetency {
    workload: String,
    level: String,
    seats: u64,
    customers: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCapability {
    metric: String,
    max_points: u32,
    threshold: u64,
    #[serde(default)]
    associations: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    name: String,
    #[serde(default)]
    targets: Option<Vec<String>>,
    unit_rates: Vec<String>,
    #[serde(default)]
    cap_units: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    min_attainment: String,
    rate: String,
}

fn invalid(key: String, problem: impl Into<String>) -> RulesError {
    RulesError::Invalid {
        key,
        problem: problem.into(),
    }
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

/// The rate text of a program: `rate` is required for plain revenue programs,
/// optional (default 0: below the first tier nothing is paid) with `tiers`, and
/// not allowed for usage programs (they use `unit_rates`).
pub fn rate_text(rate: &Option<String>, basis: Basis, has_tiers: bool) -> Result<String, String> {
    match (rate, basis) {
        (Some(_), Basis::Usage) => {
            Err("usage programs are paid per unit: use [[program.workload]] unit_rates".into())
        }
        (None, Basis::Usage) => Ok("0".into()),
        (Some(r), _) => Ok(r.clone()),
        (None, _) if has_tiers => Ok("0".into()),
        (None, _) => Err("missing: every billed-revenue program needs a rate (or tiers)".into()),
    }
}

/// Validates the usage keys of program `i`.
pub fn program_ext(
    i: usize,
    basis: Basis,
    workload: Vec<RawWorkload>,
    tiers: Vec<RawTier>,
    currency: Option<String>,
    default_targets: &[Decimal],
) -> Result<ProgramExt, RulesError> {
    let key = |k: &str| format!("program[{i}].{k}");
    let mut ext = ProgramExt::default();
    match basis {
        Basis::Usage => {
            if workload.is_empty() {
                return Err(invalid(
                    key("workload"),
                    "a usage program needs at least one [[program.workload]]",
                ));
            }
            if !tiers.is_empty() {
                return Err(invalid(
                    key("tiers"),
                    "tiers apply to billed-revenue programs; usage programs use unit_rates",
                ));
            }
            let cur = currency.as_deref().unwrap_or("USD");
            ext.currency = Some(Currency::parse(cur).ok_or_else(|| {
                invalid(key("currency"), format!("'{cur}' is not a currency code"))
            })?);
        }
        Basis::BilledRevenue => {
            if !workload.is_empty() {
                return Err(invalid(
                    key("workload"),
                    "[[program.workload]] needs basis = \"usage\"",
                ));
            }
            if currency.is_some() {
                return Err(invalid(
                    key("currency"),
                    "revenue programs accrue in the billing currency; currency is for usage programs",
                ));
            }
        }
    }
    for (j, w) in workload.into_iter().enumerate() {
        let wkey = |k: &str| format!("program[{i}].workload[{j}].{k}");
        if w.name.trim().is_empty() {
            return Err(invalid(wkey("name"), "is empty"));
        }
        let wk = workload_key(&w.name);
        if ext.workloads.iter().any(|x| x.workload == wk) {
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
        ext.workloads.push(WorkloadRate {
            workload: wk,
            workload_name: workload_display(&w.name),
            targets: t,
            unit_rates: rates,
            cap_units: w.cap_units,
        });
    }
    for (j, t) in tiers.into_iter().enumerate() {
        let tkey = |k: &str| format!("program[{i}].tiers[{j}].{k}");
        let min = decimal(&tkey("min_attainment"), &t.min_attainment)?;
        if min.is_sign_negative() {
            return Err(invalid(tkey("min_attainment"), "is negative"));
        }
        if ext.tiers.last().is_some_and(|l| l.min_attainment >= min) {
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
        ext.tiers.push(Tier {
            min_attainment: min,
            rate,
        });
    }
    Ok(ext)
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

/// Validates the `[[product]]` table.
pub fn products(raw: Vec<RawProduct>) -> Result<Vec<ProductMap>, RulesError> {
    let mut out: Vec<ProductMap> = Vec::new();
    for (j, p) in raw.into_iter().enumerate() {
        let key = |k: &str| format!("product[{j}].{k}");
        if p.matches.trim().is_empty() {
            return Err(invalid(key("match"), "is empty"));
        }
        if out
            .iter()
            .any(|q| q.matches.eq_ignore_ascii_case(p.matches.trim()))
        {
            return Err(invalid(
                key("match"),
                format!("'{}' is listed twice", p.matches),
            ));
        }
        if p.workloads.is_empty() {
            return Err(invalid(key("workloads"), "must name at least one workload"));
        }
        let mut workloads = Vec::new();
        let mut names = Vec::new();
        for w in &p.workloads {
            let k = workload_key(w);
            if k.is_empty() {
                return Err(invalid(key("workloads"), "has an empty workload name"));
            }
            if !workloads.contains(&k) {
                workloads.push(k);
                names.push(workload_display(w));
            }
        }
        out.push(ProductMap {
            matches: p.matches.trim().to_string(),
            workloads,
            workload_names: names,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: &str = r#"
[[program]]
id = "cpor-usage"
associations = ["CPOR"]
basis = "usage"
[[program.workload]]
name = "Microsoft Teams"
targets = ["0.15", "0.40"]
unit_rates = ["1.00", "2.50"]
cap_units = 5000
[[program]]
id = "tiered"
associations = ["DPOR"]
tiers = [{ min_attainment = "0.15", rate = "0.02" }, { min_attainment = "0.40", rate = "0.05" }]
[[product]]
match = "Microsoft 365 E3"
workloads = ["Exchange", "SharePoint", "OneDrive", "Teams"]
[usage]
deployment_target = "0.40"
[[usage.competency]]
workload = "Exchange Online"
level = "silver"
seats = 500
customers = 3
[[usage.capability]]
metric = "usage-growth"
max_points = 30
threshold = 1000
associations = ["CPOR", "DPOR"]
"#;

    #[test]
    fn parses_usage_keys() {
        let r = crate::rules::parse_rules(RULES).unwrap();
        let p = &r.programs[0];
        assert_eq!(p.basis, Basis::Usage);
        assert_eq!(p.rate, Decimal::ZERO);
        assert_eq!(p.usage_currency.unwrap().as_str(), "USD");
        assert_eq!(p.workloads[0].workload, "teams");
        assert_eq!(p.workloads[0].cap_units, Some(5000));
        let t = &r.programs[1];
        assert_eq!(t.tiers.len(), 2);
        assert_eq!(t.rate, Decimal::ZERO, "no rate: 0 below the first tier");
        assert_eq!(r.products[0].workloads.len(), 4);
        assert_eq!(r.usage.targets, [Decimal::new(15, 2), Decimal::new(40, 2)]);
        assert_eq!(r.usage.competencies[0].workload_name, "Exchange");
        assert_eq!(
            r.usage.capability[0].associations,
            [Association::Dpor, Association::Cpor]
        );
    }

    #[test]
    fn usage_errors_name_the_key() {
        let cases = [
            (
                RULES.replace("unit_rates = [\"1.00\", \"2.50\"]", "unit_rates = [\"1.00\"]"),
                "program[0].workload[0].unit_rates",
            ),
            (
                RULES.replace("targets = [\"0.15\", \"0.40\"]", "targets = [\"0.40\", \"0.15\"]"),
                "ascending",
            ),
            (
                RULES.replace("basis = \"usage\"", "basis = \"usage\"\nrate = \"0.1\""),
                "program[0].rate",
            ),
            (
                RULES.replace("rate = \"0.05\"", "rate = \"5\""),
                "program[1].tiers[1].rate",
            ),
            (
                RULES.replace("min_attainment = \"0.40\"", "min_attainment = \"0.10\""),
                "program[1].tiers[1].min_attainment",
            ),
            (RULES.replace("usage-growth", "growth"), "usage.capability[0].metric"),
            (RULES.replace("seats = 500", "seats = \"500\""), "seats"),
            (RULES.replace("workloads = [\"Exchange\", \"SharePoint\", \"OneDrive\", \"Teams\"]", "workloads = []"), "product[0].workloads"),
            (RULES.replace("tiers = [", "rate = \"0.01\"\ncurrency = \"EUR\"\ntiers = ["), "program[1].currency"),
            (RULES.replace("tiers = [{ min_attainment = \"0.15\", rate = \"0.02\" }, { min_attainment = \"0.40\", rate = \"0.05\" }]", ""), "program[1].rate"),
        ];
        for (text, needle) in cases {
            let e = crate::rules::parse_rules(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle} not in: {e}");
        }
    }

    #[test]
    fn workload_names() {
        assert_eq!(workload_key("Exchange Online"), workload_key("exchange"));
        assert_eq!(workload_key("Microsoft Teams"), "teams");
        assert_eq!(workload_display("skype for business"), "Skype For Business");
        assert_eq!(workload_display(" Power BI "), "Power BI");
        assert_eq!(workload_key("Power BI"), "powerbi");
    }
}
