//! The incentive rules: a TOML file ([`raw`]), parsed into validated [`Rules`].
//!
//! Rates and shares are decimal *strings* in the file (`rate = "0.04"`), never
//! floats: a float in the rules file is an error, not a silently inexact number.
//!
//! A program is of one [`ProgramKind`]: billed revenue at a flat rate, billed
//! revenue with a rate by attainment (tiers), or usage paid per compensable unit
//! (per-workload unit rates and caps). [`products`] is the product-to-workload
//! table; [`usage`] the `[usage]` settings.

pub mod earnings;
pub mod journal;
pub mod products;
pub mod raw;
pub mod usage;

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Deserialize;

pub use crate::dates::Month;
use crate::dates::{parse_date, DateError};
use crate::money::{parse_rate, Currency, RoundingMode};
pub use journal::{JournalAccounts, JournalSettings};
pub use products::{product_for, workload_display, workload_key, ProductMap};
use raw::{RawProgram, RawRules};
pub use usage::{CapabilityMetric, Competency, Metric, Tier, UsageSettings, WorkloadRate};

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

/// What a program pays on, and how its rate is found.
#[derive(Clone, Debug, PartialEq)]
pub enum ProgramKind {
    /// Billed revenue (`Subtotal`) times the program's `rate`.
    Revenue,
    /// Billed revenue, the rate chosen by the attainment of the charged
    /// product's workloads (the program's `rate` below the first tier).
    TieredRevenue { tiers: Vec<Tier> },
    /// Compensable units of usage rows times a per-workload unit rate, in
    /// `currency`.
    Usage {
        workloads: Vec<WorkloadRate>,
        currency: Currency,
    },
}

/// One incentive program, validated.
#[derive(Clone, Debug)]
pub struct Program {
    pub id: String,
    pub name: String,
    pub associations: Vec<Association>,
    pub kind: ProgramKind,
    /// Revenue programs: the rate (below the first tier with tiers); 0 for usage.
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
    /// `[[program.earnings]]`: the rows of Microsoft's earnings export that
    /// pay this program (`porledger tieout`); empty: none.
    pub earnings: Vec<earnings::EarningsMatch>,
    /// When Microsoft pays an earning of a transaction month: this many months
    /// later (default 1) ...
    pub earnings_due_months: u32,
    /// ... by this day of that month (default 16).
    pub earnings_due_day: u32,
}

impl Program {
    pub fn pays(&self, a: Association) -> bool {
        self.associations.contains(&a)
    }

    pub fn in_force(&self, d: NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= d) && self.valid_to.is_none_or(|t| d < t)
    }

    pub fn basis(&self) -> Basis {
        match self.kind {
            ProgramKind::Usage { .. } => Basis::Usage,
            _ => Basis::BilledRevenue,
        }
    }

    /// Revenue programs' tiers (empty for a flat rate or a usage program).
    pub fn tiers(&self) -> &[Tier] {
        match &self.kind {
            ProgramKind::TieredRevenue { tiers } => tiers,
            _ => &[],
        }
    }

    /// Usage programs' unit rates (empty for revenue programs).
    pub fn workloads(&self) -> &[WorkloadRate] {
        match &self.kind {
            ProgramKind::Usage { workloads, .. } => workloads,
            _ => &[],
        }
    }

    /// Usage programs' currency.
    pub fn usage_currency(&self) -> Option<Currency> {
        match &self.kind {
            ProgramKind::Usage { currency, .. } => Some(*currency),
            _ => None,
        }
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
    pub reporting_currency: Option<Currency>,
    /// `[[product]]`: which workloads a charged product stands for.
    pub products: Vec<ProductMap>,
    /// `[usage]`: attainment targets, competency and capability settings.
    pub usage: UsageSettings,
    /// `[journal]`: the accounts of `journal.csv`.
    pub journal: JournalSettings,
}

/// A rules file problem, naming the key.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    #[error("{0}")]
    Toml(String),
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

pub(crate) fn invalid(key: String, problem: impl Into<String>) -> RulesError {
    RulesError::Invalid {
        key,
        problem: problem.into(),
    }
}

/// The most programs a rules file may define: a program's index is a `u32` in
/// the fold's keys and tier notes (see [`crate::fold::DetailKey`]).
pub const MAX_PROGRAMS: usize = 1 << 20;

/// A TOML error as one line: the line and column of its span in `text`, that
/// line's text, and the message (the error's own text shows the line above a
/// caret, on lines of their own, and a fatal error is printed as one line).
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let at = e
        .span()
        .map(|s| {
            let (l, c) = crate::render::pdf::template::line_col(text, s.start);
            let quoted = text.lines().nth(l - 1).unwrap_or("").trim();
            format!("line {l}, column {c} ({quoted}): ")
        })
        .unwrap_or_default();
    format!("{at}{}", e.message().trim())
}

/// Parses and validates the rules file's text.
pub fn parse_rules(text: &str) -> Result<Rules, RulesError> {
    let raw: RawRules =
        toml::from_str(text).map_err(|e| RulesError::Toml(toml_message(text, &e)))?;
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
        Some(c) => Some(Currency::parse(c).ok_or_else(|| {
            invalid(
                "reporting_currency".into(),
                format!("'{c}' is not an ISO 4217 currency code (three letters, like EUR or USD)"),
            )
        })?),
    };
    if raw.program.is_empty() {
        return Err(invalid(
            "program".into(),
            "no [[program]] defined: nothing could ever accrue",
        ));
    }
    if raw.program.len() > MAX_PROGRAMS {
        return Err(invalid(
            "program".into(),
            format!(
                "{} programs defined; at most {MAX_PROGRAMS} are supported",
                raw.program.len()
            ),
        ));
    }
    let usage = usage::usage_settings(raw.usage)?;
    let products = products::products(raw.product)?;
    let mut programs: Vec<Program> = Vec::new();
    // The IDs so far: a look-up each, not a scan (up to MAX_PROGRAMS of them).
    let mut ids = std::collections::HashSet::new();
    for (i, p) in raw.program.into_iter().enumerate() {
        let program = parse_program(i, p, &ids, &usage.targets)?;
        ids.insert(program.id.clone());
        programs.push(program);
    }
    let journal = journal::journal_settings(raw.journal, &programs)?;
    Ok(Rules {
        rounding,
        journal,
        programs,
        conflicts,
        reporting_currency,
        products,
        usage,
    })
}

/// Validates program `i` (`earlier`: the IDs of the programs before it).
fn parse_program(
    i: usize,
    p: RawProgram,
    earlier: &std::collections::HashSet<String>,
    default_targets: &[Decimal],
) -> Result<Program, RulesError> {
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
    if earlier.contains(&id) {
        return Err(invalid(key("id"), format!("'{id}' is defined twice")));
    }
    let associations = associations(&key("associations"), &p.associations)?;
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
    let rate = program_rate(&key("rate"), &p.rate, basis, !p.tiers.is_empty())?;
    let date = |k: &str, v: &Option<String>| -> Result<Option<NaiveDate>, RulesError> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(s) => parse_date(s).map(Some).map_err(|e| {
                let why = match e {
                    DateError::Form => format!("'{s}' is not a date (use YYYY-MM-DD)"),
                    DateError::OutOfRange => e.reason(s, "YYYY-MM-DD"),
                };
                invalid(key(k), why)
            }),
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
    let exclude_qualifiers = non_empty_list(&key("exclude_qualifiers"), &p.exclude_qualifiers)?;
    let publishers = non_empty_list(&key("publishers"), &p.publishers)?;
    let earnings = earnings::earnings_matches(&format!("program[{i}]"), &p.earnings)?;
    let earnings_due_months = p.earnings_due_months.unwrap_or(1);
    if earnings_due_months > 24 {
        return Err(invalid(
            key("earnings_due_months"),
            format!("{earnings_due_months}: at most 24 months"),
        ));
    }
    let earnings_due_day = p.earnings_due_day.unwrap_or(16);
    if !(1..=28).contains(&earnings_due_day) {
        return Err(invalid(
            key("earnings_due_day"),
            format!("{earnings_due_day}: a day from 1 to 28 (every month has it)"),
        ));
    }
    Ok(Program {
        earnings,
        earnings_due_months,
        earnings_due_day,
        dedupe_by_priority,
        name: p.name.clone().unwrap_or_else(|| id.clone()),
        id,
        associations,
        rate: rate.normalize(),
        window_months: p.window_months,
        valid_from,
        valid_to,
        exclude_qualifiers,
        publishers,
        description: p.description.clone().unwrap_or_default().trim().to_string(),
        kind: program_kind(i, basis, p, default_targets)?,
    })
}

/// A list of names, trimmed and lower-cased; an empty name is an error (an
/// empty qualifier is contained in every line's qualifiers: it would exclude
/// every line).
fn non_empty_list(key: &str, raw: &[String]) -> Result<Vec<String>, RulesError> {
    raw.iter()
        .enumerate()
        .map(|(j, s)| {
            let s = s.trim();
            if s.is_empty() {
                Err(invalid(
                    format!("{key}[{j}]"),
                    "is empty: remove it (an empty entry would match every line)",
                ))
            } else if let Some(c) = s.chars().find(|c| ",;[]|\"'".contains(*c)) {
                Err(invalid(
                    format!("{key}[{j}]"),
                    format!(
                        "'{s}' contains '{c}', which separates names: list each name on its own"
                    ),
                ))
            } else {
                Ok(s.to_lowercase())
            }
        })
        .collect()
}

/// The program's associations: known codes, deduplicated, sorted.
fn associations(key: &str, raw: &[String]) -> Result<Vec<Association>, RulesError> {
    if raw.is_empty() {
        return Err(invalid(key.into(), "must name at least one association"));
    }
    let mut out = Vec::new();
    for a in raw {
        let a = Association::parse(a).ok_or_else(|| {
            invalid(
                key.into(),
                format!(
                    "unknown association '{a}' (expected POR, DPOR, CPOR, PAL, RESELLER or TIER1)"
                ),
            )
        })?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out.sort();
    Ok(out)
}

/// The program's `rate`: required for plain revenue programs, optional
/// (default 0: below the first tier nothing is paid) with `tiers`, and not
/// allowed for usage programs (they use `unit_rates`).
fn program_rate(
    key: &str,
    raw: &Option<String>,
    basis: Basis,
    has_tiers: bool,
) -> Result<Decimal, RulesError> {
    let text = match (raw, basis) {
        (Some(_), Basis::Usage) => {
            return Err(invalid(
                key.into(),
                "usage programs are paid per unit: use [[program.workload]] unit_rates",
            ))
        }
        (None, Basis::Usage) => "0",
        (Some(r), _) => r.as_str(),
        (None, _) if has_tiers => "0",
        (None, _) => {
            return Err(invalid(
                key.into(),
                "missing: every billed-revenue program needs a rate (or tiers)",
            ))
        }
    };
    let rate = parse_rate(text)
        .map_err(|_| invalid(key.into(), format!("'{text}' is not a decimal number")))?;
    if rate.is_sign_negative() || rate > Decimal::ONE {
        return Err(invalid(
            key.into(),
            format!("{rate} is outside 0..=1 (write 4% as \"0.04\")"),
        ));
    }
    Ok(rate)
}

/// The kind of program `i`: checks that the keys of the other kinds are absent.
fn program_kind(
    i: usize,
    basis: Basis,
    p: RawProgram,
    default_targets: &[Decimal],
) -> Result<ProgramKind, RulesError> {
    let key = |k: &str| format!("program[{i}].{k}");
    match basis {
        Basis::Usage => {
            if p.workload.is_empty() {
                return Err(invalid(
                    key("workload"),
                    "a usage program needs at least one [[program.workload]]",
                ));
            }
            if !p.tiers.is_empty() {
                return Err(invalid(
                    key("tiers"),
                    "tiers apply to billed-revenue programs; usage programs use unit_rates",
                ));
            }
            let cur = p.currency.as_deref().unwrap_or("USD");
            let currency = Currency::parse(cur).ok_or_else(|| {
                invalid(key("currency"), format!("'{cur}' is not a currency code"))
            })?;
            let workloads = usage::workload_rates(i, p.workload, default_targets)?;
            Ok(ProgramKind::Usage {
                workloads,
                currency,
            })
        }
        Basis::BilledRevenue => {
            if !p.workload.is_empty() {
                return Err(invalid(
                    key("workload"),
                    "[[program.workload]] needs basis = \"usage\"",
                ));
            }
            if p.currency.is_some() {
                return Err(invalid(
                    key("currency"),
                    "revenue programs accrue in the billing currency; currency is for usage programs",
                ));
            }
            let tiers = usage::tiers(i, p.tiers)?;
            Ok(if tiers.is_empty() {
                ProgramKind::Revenue
            } else {
                ProgramKind::TieredRevenue { tiers }
            })
        }
    }
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

    /// A date of the rules in the right form but out of the supported years
    /// says so, as in every input file; one in another form is not a date.
    #[test]
    fn a_rules_date_out_of_range_says_so() {
        let e = parse_rules(&OK.replace("2019-07-01", "9999-12-31"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("program[0].valid_from")
                && e.contains(
                    "9999-12-31 is outside the supported dates, 1900-01-01 to 2999-12-31"
                ),
            "{e}"
        );
        let e = parse_rules(&OK.replace("2019-07-01", "07/01/2019x"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'07/01/2019x' is not a date (use YYYY-MM-DD)"),
            "{e}"
        );
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

    #[test]
    fn seventy_thousand_programs_keep_their_order_and_empty_names_are_refused() {
        let mut text = String::new();
        for i in 0..70_000 {
            text.push_str(&format!(
                "[[program]]\nid = \"p{i}\"\nassociations = [\"PAL\"]\nrate = \"0.01\"\n"
            ));
        }
        let r = parse_rules(&text).unwrap();
        assert_eq!(r.programs[69_999].id, "p69999");
        let base = "[[program]]\nid = \"p\"\nassociations = [\"PAL\"]\nrate = \"0.01\"\n";
        for (field, value) in [
            ("exclude_qualifiers", "[\"\"]"),
            ("publishers", "[\" \"]"),
            ("exclude_qualifiers", "[\"Trial,AddOn\"]"),
        ] {
            let e = parse_rules(&format!("{base}{field} = {value}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("program[0].{field}[0]")), "{e}");
        }
    }

    const USAGE_RULES: &str = r#"
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
        let r = parse_rules(USAGE_RULES).unwrap();
        let p = &r.programs[0];
        assert_eq!(p.basis(), Basis::Usage);
        assert_eq!(p.rate, Decimal::ZERO);
        assert_eq!(p.usage_currency().unwrap().as_str(), "USD");
        assert_eq!(p.workloads()[0].workload, "teams");
        assert_eq!(p.workloads()[0].cap_units, Some(5000));
        let t = &r.programs[1];
        assert_eq!(t.tiers().len(), 2);
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
                USAGE_RULES.replace("unit_rates = [\"1.00\", \"2.50\"]", "unit_rates = [\"1.00\"]"),
                "program[0].workload[0].unit_rates",
            ),
            (
                USAGE_RULES.replace("targets = [\"0.15\", \"0.40\"]", "targets = [\"0.40\", \"0.15\"]"),
                "ascending",
            ),
            (
                USAGE_RULES.replace("basis = \"usage\"", "basis = \"usage\"\nrate = \"0.1\""),
                "program[0].rate",
            ),
            (
                USAGE_RULES.replace("rate = \"0.05\"", "rate = \"5\""),
                "program[1].tiers[1].rate",
            ),
            (
                USAGE_RULES.replace("min_attainment = \"0.40\"", "min_attainment = \"0.10\""),
                "program[1].tiers[1].min_attainment",
            ),
            (USAGE_RULES.replace("usage-growth", "growth"), "usage.capability[0].metric"),
            (USAGE_RULES.replace("seats = 500", "seats = \"500\""), "seats"),
            (USAGE_RULES.replace("workloads = [\"Exchange\", \"SharePoint\", \"OneDrive\", \"Teams\"]", "workloads = []"), "product[0].workloads"),
            (USAGE_RULES.replace("tiers = [", "rate = \"0.01\"\ncurrency = \"EUR\"\ntiers = ["), "program[1].currency"),
            (USAGE_RULES.replace("tiers = [{ min_attainment = \"0.15\", rate = \"0.02\" }, { min_attainment = \"0.40\", rate = \"0.05\" }]", ""), "program[1].rate"),
        ];
        for (text, needle) in cases {
            let e = parse_rules(&text).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle} not in: {e}");
        }
    }
}
