//! The rules file as written: serde types, no validation. [`super::parse_rules`]
//! turns them into the validated [`super::Rules`].

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    #[serde(default)]
    pub rounding: Option<String>,
    #[serde(default)]
    pub conflicts: Option<String>,
    #[serde(default)]
    pub reporting_currency: Option<String>,
    #[serde(default)]
    pub program: Vec<RawProgram>,
    #[serde(default)]
    pub product: Vec<RawProduct>,
    #[serde(default)]
    pub usage: Option<RawUsage>,
    #[serde(default)]
    pub journal: Option<RawJournal>,
}

/// `[journal]`: accounts of `journal.csv`, with `[journal.program.<id>]` overrides.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournal {
    #[serde(default)]
    pub debit_account: Option<String>,
    #[serde(default)]
    pub credit_account: Option<String>,
    #[serde(default)]
    pub cost_centre: Option<String>,
    #[serde(default)]
    pub program: std::collections::BTreeMap<String, RawJournalAccounts>,
}

/// `[journal.program.<id>]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJournalAccounts {
    #[serde(default)]
    pub debit_account: Option<String>,
    #[serde(default)]
    pub credit_account: Option<String>,
    #[serde(default)]
    pub cost_centre: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProgram {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    pub associations: Vec<String>,
    #[serde(default)]
    pub basis: Option<String>,
    #[serde(default)]
    pub rate: Option<String>,
    #[serde(default)]
    pub window_months: Option<u32>,
    #[serde(default)]
    pub valid_from: Option<String>,
    #[serde(default)]
    pub valid_to: Option<String>,
    #[serde(default)]
    pub exclude_qualifiers: Vec<String>,
    #[serde(default)]
    pub publishers: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub dedupe: Option<String>,
    #[serde(default)]
    pub workload: Vec<RawWorkload>,
    #[serde(default)]
    pub tiers: Vec<RawTier>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub earnings: Vec<super::earnings::RawEarnings>,
    #[serde(default)]
    pub earnings_due_months: Option<u32>,
    #[serde(default)]
    pub earnings_due_day: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProduct {
    #[serde(rename = "match")]
    pub matches: String,
    pub workloads: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    #[serde(default)]
    pub deployment_target: Option<String>,
    #[serde(default)]
    pub lookback_months: Option<u32>,
    #[serde(default)]
    pub competency: Vec<RawCompetency>,
    #[serde(default)]
    pub capability: Vec<RawCapability>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompetency {
    pub workload: String,
    pub level: String,
    pub seats: u64,
    pub customers: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCapability {
    pub metric: String,
    pub max_points: u32,
    pub threshold: u64,
    #[serde(default)]
    pub associations: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    pub name: String,
    #[serde(default)]
    pub targets: Option<Vec<String>>,
    pub unit_rates: Vec<String>,
    #[serde(default)]
    pub cap_units: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTier {
    pub min_attainment: String,
    pub rate: String,
}
