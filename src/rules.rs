//! The incentive rules: a TOML file, parsed into validated [`Rules`].
//!
//! Rates and shares are decimal *strings* in the file (`rate = "0.04"`), never
//! floats: a float in the rules file is an error, not a silently inexact number.

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;

use crate::dates::parse_date;
use crate::money::{parse_rate, RoundingMode};

/// Who a program pays: the kinds of credit relationship.
/// Serialised as its code (`DPOR`, `TIER1`), as in the CSV outputs.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Association {
    /// Partner of Record (designations file).
    Por,
    /// Digital Partner of Record, per subscription (designations file).
    Dpor,
    /// Claiming Partner of Record, per tenant and workload (designations file).
    Cpor,
    /// Partner Admin Link (designations file).
    Pal,
    /// The indirect reseller on the billing line (`ResellerMpnId`); no designation row.
    Reseller,
    /// The partner billed by Microsoft on the line (`MpnId`); no designation row.
    Tier1,
}

impl Association {
    pub const ALL: [Association; 6] = [
        Association::Por,
        Association::Dpor,
        Association::Cpor,
        Association::Pal,
        Association::Reseller,
        Association::Tier1,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Association::Por => "POR",
            Association::Dpor => "DPOR",
            Association::Cpor => "CPOR",
            Association::Pal => "PAL",
            Association::Reseller => "RESELLER",
            Association::Tier1 => "TIER1",
        }
    }

    /// Parses a code case-insensitively.
    pub fn parse(s: &str) -> Option<Association> {
        let s = s.trim();
        Association::ALL
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }

    /// True for the associations that come from the designations file.
    pub fn is_designated(&self) -> bool {
        !matches!(self, Association::Reseller | Association::Tier1)
    }
}

impl fmt::Display for Association {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a program's rate is applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Basis {
    /// The line's pre-tax `Subtotal` in billing currency.
    BilledRevenue,
    /// Compensable units of usage rows (`--usage`), times a unit rate.
    Usage,
}

impl Basis {
    pub fn as_str(&self) -> &'static str {
        match self {
            Basis::BilledRevenue => "billed-revenue",
            Basis::Usage => "usage",
        }
    }
}

/// One incentive program, validated.
#[derive(Clone, Debug)]
pub struct Program {
    pub id: String,
    pub name: String,
    pub associations: Vec<Association>,
    pub basis: Basis,
    pub rate: Decimal,
    /// Charges earn only within this many months of the designation's `valid_from`.
    pub window_months: Option<u32>,
    /// The rule applies to charges dated on or after this day.
    pub valid_from: Option<NaiveDate>,
    /// ... and before this day.
    pub valid_to: Option<NaiveDate>,
    /// Lower-cased; a line whose `ProductQualifiers` contains any of these earns nothing.
    pub exclude_qualifiers: Vec<String>,
    /// Lower-cased; empty = every publisher.
    pub publishers: Vec<String>,
    /// Free text printed under the program on statements.
    pub description: String,
    /// Pay a partner that holds several of the program's associations on a line
    /// only through the first in [`PRIORITY`] order.
    pub dedupe_by_priority: bool,
    /// Usage programs: rates per workload (see `usage_rules`).
    pub workloads: Vec<crate::usage_rules::WorkloadRate>,
    /// Revenue programs: rate by attainment (empty = always `rate`).
    pub tiers: Vec<crate::usage_rules::Tier>,
    /// Usage programs: currency of the unit rates.
    pub usage_currency: Option<crate::money::Currency>,
}

impl Program {
    pub fn pays(&self, a: Association) -> bool {
        self.associations.contains(&a)
    }

    pub fn in_force(&self, d: NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= d) && self.valid_to.is_none_or(|t| d < t)
    }
}

/// What `run` does when two partners hold the same exclusive association (POR,
/// DPOR, or CPOR for one workload) on the same subscription at the same date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// The billing line is rejected, naming the designation rows.
    Reject,
    /// The designation with the latest `valid_from` (then the later file line) wins.
    LatestWins,
    /// The partners split the credit (explicit shares, or equally).
    #[default]
    Split,
}

impl ConflictPolicy {
    pub fn as_str(&self) -> &'static str {
        match self {
            ConflictPolicy::Reject => "reject",
            ConflictPolicy::LatestWins => "latest-wins",
            ConflictPolicy::Split => "split",
        }
    }
}

/// Microsoft's de-duplication order when one partner holds several associations
/// on the same line: PAL, transacting partner of record (DPOR), partner of
/// record (POR), claiming partner (CPOR), CSP Tier 1, CSP Tier 2 (reseller).
pub const PRIORITY: [Association; 6] = [
    Association::Pal,
    Association::Dpor,
    Association::Por,
    Association::Cpor,
    Association::Tier1,
    Association::Reseller,
];

/// The whole rules file.
#[derive(Clone, Debug)]
pub struct Rules {
    pub rounding: RoundingMode,
    pub programs: Vec<Program>,
    pub conflicts: ConflictPolicy,
    /// Currency of the converted totals when an FX table is given.
    pub reporting_currency: Option<crate::money::Currency>,
    /// `[[product]]`: which workloads a charged product stands for.
    pub products: Vec<crate::usage_rules::ProductMap>,
    /// `[usage]`: attainment targets, competency and capability settings.
    pub usage: crate::usage_rules::UsageSettings,
}

/// A rules file problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{0}")]
    Toml(String),
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    #[serde(default)]
    rounding: Option<String>,
    #[serde(default)]
    conflicts: Option<String>,
    #[serde(default)]
    reporting_currency: Option<String>,
    #[serde(default)]
    program: Vec<RawProgram>,
    #[serde(default)]
    product: Vec<crate::usage_rules::RawProduct>,
    #[serde(default)]
    usage: Option<crate::usage_rules::RawUsage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProgram {
    id: String,
    #[serde(default)]
    name: Option<String>,
    associations: Vec<String>,
    #[serde(default)]
    basis: Option<String>,
    #[serde(default)]
    rate: Option<String>,
    #[serde(default)]
    window_months: Option<u32>,
    #[serde(default)]
    valid_from: Option<String>,
    #[serde(default)]
    valid_to: Option<String>,
    #[serde(default)]
    exclude_qualifiers: Vec<String>,
    #[serde(default)]
    publishers: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    dedupe: Option<String>,
    #[serde(default)]
    workload: Vec<crate::usage_rules::RawWorkload>,
    #[serde(default)]
    tiers: Vec<crate::usage_rules::RawTier>,
    #[serde(default)]
    currency: Option<String>,
}

fn invalid(key: String, problem: impl Into<String>) -> RulesError {
    RulesError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// Parses and validates the rules file's text.
pub fn parse_rules(text: &str) -> Result<Rules, RulesError> {
    let raw: RawRules = toml::from_str(text).map_err(|e| RulesError::Toml(e.to_string()))?;
    let rounding = match raw.rounding.as_deref() {
        None => RoundingMode::HalfUp,
        Some(s) => s
            .parse()
            .map_err(|e: String| invalid("rounding".into(), e))?,
    };
    let conflicts = match raw.conflicts.as_deref() {
        None | Some("split") => ConflictPolicy::Split,
        Some("reject") => ConflictPolicy::Reject,
        Some("latest-wins") => ConflictPolicy::LatestWins,
        Some(other) => {
            return Err(invalid(
                "conflicts".into(),
                format!("unknown policy '{other}' (expected reject, latest-wins or split)"),
            ))
        }
    };
    let reporting_currency = match raw.reporting_currency.as_deref() {
        None => None,
        Some(c) => Some(crate::money::Currency::parse(c).ok_or_else(|| {
            invalid(
                "reporting_currency".into(),
                format!("'{c}' is not a three-letter currency code"),
            )
        })?),
    };
    if raw.program.is_empty() {
        return Err(invalid(
            "program".into(),
            "no [[program]] defined: nothing could ever accrue",
        ));
    }
    let usage = crate::usage_rules::usage_settings(raw.usage)?;
    let products = crate::usage_rules::products(raw.product)?;
    let mut programs: Vec<Program> = Vec::new();
    for (i, p) in raw.program.into_iter().enumerate() {
        let key = |k: &str| format!("program[{i}].{k}");
        let id = p.id.trim().to_string();
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                key("id"),
                format!(
                    "'{}' must be non-empty and use only letters, digits, '-' and '_'",
                    p.id
                ),
            ));
        }
        if programs.iter().any(|q| q.id == id) {
            return Err(invalid(key("id"), format!("'{id}' is defined twice")));
        }
        let mut associations = Vec::new();
        if p.associations.is_empty() {
            return Err(invalid(
                key("associations"),
                "must name at least one association",
            ));
        }
        for a in &p.associations {
            let a = Association::parse(a).ok_or_else(|| {
                invalid(
                    key("associations"),
                    format!("unknown association '{a}' (expected POR, DPOR, CPOR, PAL, RESELLER or TIER1)"),
                )
            })?;
            if !associations.contains(&a) {
                associations.push(a);
            }
        }
        associations.sort();
        let basis = match p.basis.as_deref().unwrap_or("billed-revenue") {
            "billed-revenue" => Basis::BilledRevenue,
            "usage" => Basis::Usage,
            other => {
                return Err(invalid(
                    key("basis"),
                    format!("unknown basis '{other}' (expected billed-revenue)"),
                ))
            }
        };
        let p_rate = crate::usage_rules::rate_text(&p.rate, basis, !p.tiers.is_empty())
            .map_err(|m| invalid(key("rate"), m))?;
        let rate = parse_rate(&p_rate)
            .map_err(|_| invalid(key("rate"), format!("'{}' is not a decimal number", p_rate)))?;
        if rate.is_sign_negative() || rate > Decimal::ONE {
            return Err(invalid(
                key("rate"),
                format!("{rate} is outside 0..=1 (write 4% as \"0.04\")"),
            ));
        }
        let date = |k: &str, v: &Option<String>| -> Result<Option<NaiveDate>, RulesError> {
            match v.as_deref().map(str::trim) {
                None | Some("") => Ok(None),
                Some(s) => parse_date(s)
                    .map(Some)
                    .map_err(|_| invalid(key(k), format!("'{s}' is not a date (use YYYY-MM-DD)"))),
            }
        };
        let valid_from = date("valid_from", &p.valid_from)?;
        let valid_to = date("valid_to", &p.valid_to)?;
        if let (Some(f), Some(t)) = (valid_from, valid_to) {
            if t <= f {
                return Err(invalid(
                    key("valid_to"),
                    format!("{t} is not after valid_from {f}"),
                ));
            }
        }
        if p.window_months == Some(0) {
            return Err(invalid(
                key("window_months"),
                "must be at least 1 (omit it for no window)",
            ));
        }
        let dedupe_by_priority = match p.dedupe.as_deref() {
            None | Some("none") => false,
            Some("priority") => true,
            Some(other) => {
                return Err(invalid(
                    key("dedupe"),
                    format!("unknown value '{other}' (expected none or priority)"),
                ))
            }
        };
        let ext = crate::usage_rules::program_ext(
            i,
            basis,
            p.workload,
            p.tiers,
            p.currency,
            &usage.targets,
        )?;
        programs.push(Program {
            dedupe_by_priority,
            name: p.name.unwrap_or_else(|| id.clone()),
            id,
            associations,
            basis,
            rate: rate.normalize(),
            window_months: p.window_months,
            valid_from,
            valid_to,
            exclude_qualifiers: p
                .exclude_qualifiers
                .iter()
                .map(|s| s.trim().to_lowercase())
                .collect(),
            publishers: p
                .publishers
                .iter()
                .map(|s| s.trim().to_lowercase())
                .collect(),
            description: p.description.unwrap_or_default().trim().to_string(),
            workloads: ext.workloads,
            tiers: ext.tiers,
            usage_currency: ext.currency,
        });
    }
    Ok(Rules {
        rounding,
        programs,
        conflicts,
        reporting_currency,
        products,
        usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
rounding = "half-even"
[[program]]
id = "por-core"
name = "Partner of Record incentive"
associations = ["POR", "dpor"]
basis = "billed-revenue"
rate = "0.04"
window_months = 36
valid_from = "2019-07-01"
exclude_qualifiers = ["Trial"]
publishers = ["Microsoft Corporation"]
"#;

    #[test]
    fn parses_the_documented_example() {
        let r = parse_rules(OK).unwrap();
        assert_eq!(r.rounding, RoundingMode::HalfEven);
        let p = &r.programs[0];
        assert_eq!(p.associations, vec![Association::Por, Association::Dpor]);
        assert_eq!(p.rate.to_string(), "0.04");
        assert_eq!(p.exclude_qualifiers, vec!["trial"]);
        assert!(p.in_force(NaiveDate::from_ymd_opt(2019, 7, 1).unwrap()));
        assert!(!p.in_force(NaiveDate::from_ymd_opt(2019, 6, 30).unwrap()));
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (OK.replace("\"0.04\"", "0.04"), "rate"),
            (OK.replace("\"0.04\"", "\"4%\""), "program[0].rate"),
            (
                OK.replace("\"dpor\"", "\"XPOR\""),
                "program[0].associations",
            ),
            (
                OK.replace("2019-07-01", "2019-13-01"),
                "program[0].valid_from",
            ),
            (OK.replace("half-even", "nearest"), "rounding"),
            (
                OK.replace("window_months", "windows_months"),
                "windows_months",
            ),
            (
                format!(
                    "{OK}\n[[program]]\nid=\"por-core\"\nassociations=[\"PAL\"]\nrate=\"0.01\""
                ),
                "defined twice",
            ),
        ];
        for (text, needle) in cases {
            let e = parse_rules(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle} not in: {e}");
        }
    }
}
