//! Statements: the rounded, per-partner view of a fold. Both renderers (CSV and
//! PDF) print this model and nothing else, so they agree to the cent.
//!
//! A statement line is one (partner, customer, program, currency, accrual
//! month): its exact accruals are summed, then rounded once with
//! [`round_money`]. A customer and program's total over the months
//! ([`ProgramTotal`]) and a partner's total per currency are sums of rounded
//! lines, so every statement adds up on paper. The customer transparency statement shows the detail behind each
//! line (association, subscription, rate, share) with exact amounts.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use hashbrown::HashMap;
use rayon::prelude::*;
use rust_decimal::Decimal;

use crate::attain::PartnerUsage;
use crate::attribute::DesignationIndex;
use crate::config::{Association, Rules};
use crate::dates::{Month, Period};
use crate::fold::{DetailKey, Sums};
use crate::ingest::fx::FxTable;
use crate::model::TierNote;
use crate::money::{round_money, Currency, ExactArith, RoundingMode};
use crate::text::Shared;

use serde::{Deserialize, Serialize};

/// One (customer, program, currency, accrual month) line of a partner statement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatementLine {
    pub customer_id: Arc<str>,
    /// The customer's name (in `statements.json` once per customer: see
    /// [`StatementSet::from_json`]).
    #[serde(skip_serializing, default)]
    pub customer_name: Arc<str>,
    pub program_id: Arc<str>,
    /// The program's name (in `statements.json` once, in `programs`).
    #[serde(skip_serializing, default)]
    pub program_name: Arc<str>,
    /// The accrual month of the line's accruals (`YYYY-MM` in JSON).
    #[serde(with = "month_label")]
    pub month: Month,
    pub currency: Currency,
    pub lines: u64,
    pub basis: Decimal,
    /// The rate, when every accrual of the line used the same one.
    pub rate: Option<Decimal>,
    pub accrual_exact: Decimal,
    /// `round_money(accrual_exact)`.
    pub amount: Decimal,
}

/// A customer and program's total in one currency over its accrual months:
/// the sum of its rounded statement lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramTotal {
    pub customer_id: Arc<str>,
    pub program_id: Arc<str>,
    pub currency: Currency,
    /// Statement lines (accrual months) summed.
    pub months: u32,
    pub lines: u64,
    pub basis: Decimal,
    pub amount: Decimal,
}

/// Serialises a [`Month`] as its label, `YYYY-MM`.
pub mod month_label {
    use crate::dates::Month;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &Month, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Month, D::Error> {
        let s = String::deserialize(d)?;
        let p: crate::dates::Period = s.parse().map_err(serde::de::Error::custom)?;
        if s.contains("..") || p.label() != s {
            return Err(serde::de::Error::custom(format!(
                "'{s}' is not a month YYYY-MM"
            )));
        }
        Ok(Month::of(p.start))
    }
}

/// The detail behind statement lines, for transparency statements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DetailLine {
    /// [`Shared`] text: a run holds one detail per statement group, millions,
    /// and the program and subscription are shared by many of them.
    pub program_id: Shared,
    /// The program's name (in `statements.json` once, in `programs`).
    #[serde(skip_serializing, default)]
    pub program_name: Shared,
    /// The accrual month (`YYYY-MM` in JSON).
    #[serde(with = "month_label")]
    pub month: Month,
    pub association: Association,
    /// Shared by the partner's details of one subscription (months, programs).
    pub subscription_id: Shared,
    pub currency: Currency,
    pub rate: Decimal,
    pub share: Decimal,
    pub lines: u64,
    pub basis: Decimal,
    pub accrual_exact: Decimal,
}

/// A designation as printed to the customer: who, how, since when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesignationInfo {
    pub association: Association,
    pub subscription_id: Option<String>,
    pub workload: String,
    pub share: Option<Decimal>,
    pub valid_from: Option<NaiveDate>,
    pub valid_to: Option<NaiveDate>,
    pub source_line: u64,
}

/// A total converted into the reporting currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversion {
    pub currency: Currency,
    pub rate: Decimal,
    /// The date the rate was published; `None` for the same currency (rate 1).
    pub rate_date: Option<NaiveDate>,
    /// `round_money(amount x rate)` in the reporting currency.
    pub amount: Decimal,
}

/// Total of one currency.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurrencyTotal {
    pub currency: Currency,
    pub basis: Decimal,
    pub amount: Decimal,
    /// With an FX table: this total in the reporting currency.
    pub converted: Option<Conversion>,
}

/// How totals are converted: the FX table and the reporting currency.
pub struct Reporting<'a> {
    pub fx: &'a FxTable,
    pub currency: Currency,
}

/// Why statements cannot be built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementError {
    /// A rate the FX table does not have.
    MissingRate(MissingRate),
    /// A sum or conversion whose exact result is not a decimal.
    Overflow(Overflow),
}

/// An amount of a statement that cannot be computed: what and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overflow {
    /// The partner, customer, program and currency (or the FX pair) concerned.
    pub what: String,
    pub cause: String,
}

impl From<MissingRate> for StatementError {
    fn from(m: MissingRate) -> Self {
        StatementError::MissingRate(m)
    }
}

impl From<Overflow> for StatementError {
    fn from(o: Overflow) -> Self {
        StatementError::Overflow(o)
    }
}

/// `a + b`, or an [`Overflow`] about `what`.
fn add(a: Decimal, b: Decimal, what: impl FnOnce() -> String) -> Result<Decimal, Overflow> {
    a.exact_add(b).ok_or_else(|| Overflow {
        what: what(),
        cause: format!(
            "{a} + {b} does not fit a decimal exactly (beyond about 7.9e28, or more than 28 \
             significant digits)"
        ),
    })
}

/// A rate the FX table does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRate {
    pub from: Currency,
    pub to: Currency,
    pub on: NaiveDate,
}

/// What one partner earned from one customer, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerStatement {
    pub customer_id: String,
    pub customer_name: String,
    pub designations: Vec<DesignationInfo>,
    /// The partner-statement lines of this customer.
    pub lines: Vec<StatementLine>,
    /// The totals over months of this customer's programs.
    #[serde(default)]
    pub program_totals: Vec<ProgramTotal>,
    pub details: Vec<DetailLine>,
    pub totals: Vec<CurrencyTotal>,
}

/// One partner's statement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartnerStatement {
    pub partner_id: String,
    pub partner_name: String,
    /// Per customer, program and currency: the sum of its month lines.
    #[serde(default)]
    pub program_totals: Vec<ProgramTotal>,
    pub totals: Vec<CurrencyTotal>,
    pub customers: Vec<CustomerStatement>,
    /// With an FX table: the sum of the converted totals, in the reporting currency.
    pub reporting_total: Option<(Currency, Decimal)>,
    /// Usage attainment of every tenant-workload the partner holds in the
    /// period (filled by `attain`; empty without `--usage`).
    pub attainment: Vec<crate::model::AttainmentLine>,
    /// How tiered revenue rates were chosen for this partner's customers.
    pub tier_notes: Vec<crate::model::TierNote>,
}

impl PartnerStatement {
    /// Every customer's lines, in customer order.
    pub fn lines(&self) -> impl Iterator<Item = &StatementLine> + Clone {
        self.customers.iter().flat_map(|c| c.lines.iter())
    }
}

/// One row of `summary.csv`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub partner_id: String,
    pub partner_name: String,
    pub program_id: String,
    pub currency: Currency,
    pub lines: u64,
    #[serde(with = "rust_decimal::serde::str")]
    pub basis_amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub accrual_amount: Decimal,
}

/// A program as explained to readers of a statement (the transparency statement
/// describes every program a partner earned from). Carried in the model so that
/// `porledger render` can re-render without the rules file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramInfo {
    pub id: String,
    pub name: String,
    /// Free text from the rules file (`description`); may be empty.
    pub description: String,
    /// What the rate applies to (`billed-revenue`).
    pub basis: String,
}

/// Everything a run publishes about money. Serialised as `statements.json`, the
/// input of `porledger render` and `porledger close`, without what it would
/// repeat (a partner's lines, which are its customers' lines; customer and
/// program names on every line): read it with [`StatementSet::from_json`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatementSet {
    pub period: Period,
    pub rounding: RoundingMode,
    pub partners: Vec<PartnerStatement>,
    pub summary: Vec<SummaryRow>,
    #[serde(default)]
    pub programs: Vec<ProgramInfo>,
}

impl StatementSet {
    /// Reads `statements.json` and puts back what it leaves out: each
    /// partner's lines (its customers' lines, in order) and the customer and
    /// program names of every line. A file written before names were left out
    /// reads the same.
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<StatementSet> {
        let mut set: StatementSet = serde_json::from_slice(bytes)?;
        // Each program's name as lines and as detail lines hold it.
        let names: BTreeMap<&str, (Arc<str>, Shared)> = set
            .programs
            .iter()
            .map(|p| {
                (
                    p.id.as_str(),
                    (Arc::from(p.name.as_str()), Shared::new(&p.name)),
                )
            })
            .collect();
        for p in &mut set.partners {
            for c in &mut p.customers {
                let customer: Arc<str> = Arc::from(c.customer_name.as_str());
                for l in &mut c.lines {
                    l.customer_name = customer.clone();
                    if let Some((n, _)) = names.get(&*l.program_id) {
                        l.program_name.clone_from(n);
                    }
                }
                for d in &mut c.details {
                    if let Some((_, n)) = names.get(&*d.program_id) {
                        d.program_name.clone_from(n);
                    }
                }
            }
        }
        Ok(set)
    }
}

/// Names partners that the designations no longer name (a partner paid only
/// through a credit's reversal of a closed accrual, after the customer moved)
/// with `known` (the name the history issued them under). A name from the
/// designations always wins.
pub fn fill_partner_names(set: &mut StatementSet, known: &BTreeMap<String, String>) {
    for p in set
        .partners
        .iter_mut()
        .filter(|p| p.partner_name.is_empty())
    {
        if let Some(n) = known.get(&p.partner_id) {
            p.partner_name.clone_from(n);
        }
    }
    for r in set.summary.iter_mut().filter(|r| r.partner_name.is_empty()) {
        if let Some(n) = known.get(&r.partner_id) {
            r.partner_name.clone_from(n);
        }
    }
}

/// Totals per currency of `lines` (of partner `partner`, for errors).
fn totals<'a>(
    lines: impl IntoIterator<Item = &'a StatementLine>,
    partner: &str,
) -> Result<Vec<CurrencyTotal>, Overflow> {
    let mut m: BTreeMap<Currency, (Decimal, Decimal)> = BTreeMap::new();
    for l in lines {
        let e = m.entry(l.currency).or_default();
        let what = || format!("partner {partner}: {} total", l.currency);
        e.0 = add(e.0, l.basis, what)?;
        e.1 = add(e.1, l.amount, what)?;
    }
    Ok(m.into_iter()
        .map(|(currency, (basis, amount))| CurrencyTotal {
            currency,
            basis,
            amount,
            converted: None,
        })
        .collect())
}

/// Converts a partner's currency totals (rounded once per currency, with the
/// rate published on or before the statement date).
fn convert(
    p: &mut PartnerStatement,
    r: &Reporting<'_>,
    on: NaiveDate,
    mode: RoundingMode,
) -> Result<(), StatementError> {
    let mut sum = Decimal::ZERO;
    for t in &mut p.totals {
        let (rate, rate_date) = r.fx.rate(t.currency, r.currency, on).ok_or(MissingRate {
            from: t.currency,
            to: r.currency,
            on,
        })?;
        let source = r.fx.source(t.currency, r.currency, on);
        let what = || {
            format!(
                "partner {}: {} total converted to {} at the {}->{} rate {rate}{}{}",
                p.partner_id,
                t.currency,
                r.currency,
                t.currency,
                r.currency,
                rate_date.map(|d| format!(" of {d}")).unwrap_or_default(),
                source
                    .as_ref()
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default()
            )
        };
        let product = t.amount.checked_mul(rate).ok_or_else(|| Overflow {
            what: what(),
            cause: format!(
                "{} x {rate} is larger than the largest decimal (about 7.9e28)",
                t.amount
            ),
        })?;
        let amount = round_money(product, r.currency, mode);
        sum = add(sum, amount, what)?;
        t.converted = Some(Conversion {
            currency: r.currency,
            rate,
            rate_date,
            amount,
        });
    }
    p.reporting_total = Some((r.currency, sum));
    Ok(())
}

/// Builds every statement from a finished fold, taking its groups (the fold
/// keeps its customer names and row counts); with `reporting`, adds totals
/// converted into the reporting currency. The whole set in memory, for
/// tests: `porledger run` writes each batch of partners and drops it
/// ([`build_each`]).
#[cfg(test)]
pub(crate) fn build(
    fold: &mut crate::fold::Fold,
    rules: &Rules,
    index: &DesignationIndex,
    period: Period,
    reporting: Option<&Reporting<'_>>,
) -> Result<StatementSet, StatementError> {
    // Groups in memory only: no run file to fail on.
    let groups = crate::spill::partner_groups(
        std::mem::take(&mut fold.details),
        crate::spill::Runs::default(),
    )
    .map(|g| Ok(g.expect("groups held in memory")));
    let fold: &crate::fold::Fold = fold;
    let mut set = StatementSet {
        period,
        rounding: rules.rounding,
        partners: Vec::new(),
        summary: Vec::new(),
        programs: program_info(rules),
    };
    build_each(
        groups,
        &|c| fold.customer_name(c),
        &Builder {
            rules,
            index,
            period,
            reporting,
            batch_groups: BATCH_GROUPS,
        },
        |e| e,
        |batch| {
            set.partners.extend(batch.partners);
            set.summary.extend(batch.summary);
            Ok(())
        },
    )?;
    sort_summary(&mut set.summary);
    Ok(set)
}

/// What statements are built with, besides the groups.
pub struct Builder<'a> {
    pub rules: &'a Rules,
    pub index: &'a DesignationIndex,
    pub period: Period,
    /// With an FX table: totals converted into the reporting currency.
    pub reporting: Option<&'a Reporting<'a>>,
    /// Groups per batch of partners handed on at once ([`BATCH_GROUPS`]; a
    /// batch holds at least one partner per thread of the current pool).
    pub batch_groups: usize,
}

/// Groups per batch of partners handed to `emit` in [`build_each`] (a
/// batch is at least one partner per thread): about 20 MB of groups and 15 MB of
/// statements, enough partners to keep every thread busy.
pub const BATCH_GROUPS: usize = 1 << 17;

/// Builds the statements from `groups`, one partner's groups per item in
/// partner order (see [`crate::spill::partner_groups`]), a batch of
/// partners at a time on the current rayon pool, and hands each batch to
/// `emit` as a [`StatementSet`] of those partners and their summary rows.
/// Memory holds one batch of groups and statements, whatever the number of
/// partners. Summary rows come per batch; [`sort_summary`] puts the whole
/// run's in the order of `summary.csv`.
pub fn build_each<E>(
    groups: impl Iterator<Item = Result<Vec<(DetailKey, Sums)>, E>>,
    customer_name: &(dyn Fn(&str) -> String + Sync),
    b: &Builder<'_>,
    error: impl Fn(StatementError) -> E,
    mut emit: impl FnMut(StatementSet) -> Result<(), E>,
) -> Result<(), E> {
    let names = b.index.partner_names();
    // Shared by every line that names the program.
    let programs: Vec<ProgramText> = b
        .rules
        .programs
        .iter()
        .map(|p| ProgramText {
            id: Arc::from(p.id.as_str()),
            name: Arc::from(p.name.as_str()),
            detail_id: Shared::new(&p.id),
            detail_name: Shared::new(&p.name),
        })
        .collect();
    let info = program_info(b.rules);
    let mut batch: Vec<Vec<(DetailKey, Sums)>> = Vec::new();
    let mut held = 0;
    // At least a partner per thread, however large each is.
    let threads = rayon::current_num_threads();
    let mut groups = groups.peekable();
    while let Some(g) = groups.next() {
        let g = g?;
        held += g.len();
        if !g.is_empty() {
            batch.push(g);
        }
        if (held < b.batch_groups || batch.len() < threads) && groups.peek().is_some() {
            continue;
        }
        // Collected as results, then the first error in partner order is
        // taken: rayon's own collect into a `Result` stops at whichever
        // error a thread meets first, and the message would name another
        // group from one run to the next.
        let built: Vec<Result<PartnerStatement, StatementError>> = std::mem::take(&mut batch)
            .into_par_iter()
            .map(|g| {
                let mut p =
                    partner_statement(&g, b.rules, &programs, b.index, names, customer_name)?;
                drop(g);
                if let Some(r) = b.reporting {
                    convert(&mut p, r, b.period.last_day(), b.rules.rounding)?;
                }
                Ok(p)
            })
            .collect();
        let built = built
            .into_iter()
            .collect::<Result<Vec<PartnerStatement>, StatementError>>()
            .map_err(&error)?;
        held = 0;
        let summary = summary_rows(&built).map_err(|o| error(o.into()))?;
        emit(StatementSet {
            period: b.period,
            rounding: b.rules.rounding,
            partners: built,
            summary,
            programs: info.clone(),
        })?;
    }
    Ok(())
}

/// The programs of the rules as statements describe them.
pub fn program_info(rules: &Rules) -> Vec<ProgramInfo> {
    rules
        .programs
        .iter()
        .map(|p| ProgramInfo {
            id: p.id.clone(),
            name: p.name.clone(),
            description: p.description.clone(),
            basis: p.basis().as_str().to_string(),
        })
        .collect()
}

/// The `summary.csv` rows of `partners`: per partner, program and currency.
fn summary_rows(partners: &[PartnerStatement]) -> Result<Vec<SummaryRow>, Overflow> {
    let mut summary: BTreeMap<(&str, &str, Currency), SummaryRow> = BTreeMap::new();
    for p in partners {
        for l in p.lines() {
            let row = summary
                .entry((&p.partner_id, &*l.program_id, l.currency))
                .or_insert_with(|| SummaryRow {
                    partner_id: p.partner_id.clone(),
                    partner_name: p.partner_name.clone(),
                    program_id: l.program_id.to_string(),
                    currency: l.currency,
                    lines: 0,
                    basis_amount: Decimal::ZERO,
                    accrual_amount: Decimal::ZERO,
                });
            row.lines += l.lines;
            let what = || {
                format!(
                    "partner {}: program {} summary ({})",
                    p.partner_id, l.program_id, l.currency
                )
            };
            row.basis_amount = add(row.basis_amount, l.basis, what)?;
            row.accrual_amount = add(row.accrual_amount, l.amount, what)?;
        }
    }
    Ok(summary.into_values().collect())
}

/// Puts summary rows in the order of `summary.csv`: partner, program, currency.
pub fn sort_summary(rows: &mut [SummaryRow]) {
    rows.sort_by(|a, b| {
        (&a.partner_id, &a.program_id, a.currency).cmp(&(&b.partner_id, &b.program_id, b.currency))
    });
}

/// A customer's statement before its lines: the customer and the partner's
/// designations for it.
fn new_customer(
    index: &DesignationIndex,
    partner_id: &str,
    cust: &str,
    name: &str,
) -> CustomerStatement {
    CustomerStatement {
        customer_id: cust.to_string(),
        customer_name: name.to_string(),
        designations: index
            .of_customer(cust)
            .filter(|d| d.partner_id == partner_id)
            .map(|d| DesignationInfo {
                association: d.association,
                subscription_id: d.subscription_id.clone(),
                workload: d.workload.clone(),
                share: d.share,
                valid_from: d.valid_from,
                valid_to: d.valid_to,
                source_line: d.line,
            })
            .collect(),
        lines: Vec::new(),
        program_totals: Vec::new(),
        details: Vec::new(),
        totals: Vec::new(),
    }
}

/// The totals over months of `lines` (sorted by customer, program, currency,
/// month), of partner `partner` for errors.
fn program_totals<'a>(
    lines: impl IntoIterator<Item = &'a StatementLine>,
    partner: &str,
) -> Result<Vec<ProgramTotal>, Overflow> {
    let mut out: Vec<ProgramTotal> = Vec::new();
    for l in lines {
        match out.last_mut() {
            Some(t)
                if t.customer_id == l.customer_id
                    && t.program_id == l.program_id
                    && t.currency == l.currency =>
            {
                let what = || {
                    format!(
                        "partner {partner}, customer {}, program {} ({}): total over months",
                        l.customer_id, l.program_id, l.currency
                    )
                };
                t.months += 1;
                t.lines += l.lines;
                t.basis = add(t.basis, l.basis, what)?;
                t.amount = add(t.amount, l.amount, what)?;
            }
            _ => out.push(ProgramTotal {
                customer_id: l.customer_id.clone(),
                program_id: l.program_id.clone(),
                currency: l.currency,
                months: 1,
                lines: l.lines,
                basis: l.basis,
                amount: l.amount,
            }),
        }
    }
    Ok(out)
}

/// A program's ID and name as statement lines and detail lines share them.
struct ProgramText {
    id: Arc<str>,
    name: Arc<str>,
    detail_id: Shared,
    detail_name: Shared,
}

fn partner_statement(
    details: &[(DetailKey, Sums)],
    rules: &Rules,
    programs: &[ProgramText],
    index: &DesignationIndex,
    names: &BTreeMap<String, String>,
    customer_name: &(dyn Fn(&str) -> String + Sync),
) -> Result<PartnerStatement, Overflow> {
    let partner_id = details[0].0.partner_id().to_string();
    // Groups are sorted by customer, program, currency and month first: each
    // run of equal (customer, program, currency, month) is one statement line.
    let mut customers: Vec<CustomerStatement> = Vec::new();
    // The customer's ID and name, shared by its lines (grouped by customer first).
    let mut current: Option<(Arc<str>, Arc<str>)> = None;
    let mut subscriptions: HashMap<&[u8], Shared> = HashMap::new();
    fn line_key(k: &DetailKey) -> (&[u8], u32, Currency, Month) {
        (k.packed_customer(), k.program, k.currency, k.month)
    }
    let mut rest = details;
    while let Some((first, _)) = rest.first() {
        let key = line_key(first);
        let n = rest.iter().take_while(|(k, _)| line_key(k) == key).count();
        let (ds, later) = rest.split_at(n);
        rest = later;
        let (_, prog, currency, month) = key;
        let cust = &*first.customer_id();
        let program = &programs[prog as usize];
        let program_id = &program.id;
        let (customer_id, name) = match &current {
            Some((id, name)) if **id == *cust => (id.clone(), name.clone()),
            _ => {
                let c = (Arc::from(cust), Arc::from(customer_name(cust).as_str()));
                current = Some(c.clone());
                c
            }
        };
        let mut sums = Sums::default();
        let mut rate = Some(ds[0].0.rate());
        for (k, s) in ds {
            sums.add(s);
            if rate != Some(k.rate()) {
                rate = None;
            }
        }
        let what = || {
            format!(
                "partner {partner_id}, customer {cust}, program {program_id}, month {month} ({currency})"
            )
        };
        let exact = |s: &crate::fold::ExactSum, of: &str| {
            s.to_decimal().map_err(|e| Overflow {
                what: what(),
                cause: format!("sum of the {of} amounts: {e}"),
            })
        };
        let basis = exact(&sums.basis, "basis")?;
        let accrual = exact(&sums.accrual, "accrual")?;
        let line = StatementLine {
            customer_id,
            customer_name: name,
            program_id: program_id.clone(),
            program_name: program.name.clone(),
            month,
            currency,
            lines: sums.lines,
            basis,
            rate,
            accrual_exact: accrual,
            amount: round_money(accrual, currency, rules.rounding),
        };
        if customers.last().is_none_or(|c| c.customer_id != cust) {
            customers.push(new_customer(index, &partner_id, cust, &line.customer_name));
        }
        let cs = customers.last_mut().expect("the line's customer");
        cs.details.reserve(ds.len());
        for (k, s) in ds {
            let (rate, share) = k.rate_and_share();
            cs.details.push(DetailLine {
                program_id: program.detail_id.clone(),
                program_name: program.detail_name.clone(),
                month,
                association: k.association,
                subscription_id: subscriptions
                    .entry(k.packed_subscription())
                    .or_insert_with(|| Shared::new(&k.subscription_id()))
                    .clone(),
                currency,
                rate,
                share,
                lines: s.lines,
                basis: exact(&s.basis, "basis")?,
                accrual_exact: exact(&s.accrual, "accrual")?,
            });
        }
        cs.lines.push(line);
    }
    let customers: Vec<CustomerStatement> = customers
        .into_iter()
        .map(|mut c| {
            // Grown a statement line at a time: up to half of each vector
            // was spare room, kept for the rest of the run.
            c.details.shrink_to_fit();
            c.lines.shrink_to_fit();
            c.designations
                .sort_by_key(|d| (d.valid_from, d.source_line));
            c.totals = totals(&c.lines, &partner_id)?;
            c.program_totals = program_totals(&c.lines, &partner_id)?;
            Ok(c)
        })
        .collect::<Result<_, Overflow>>()?;
    let mut p = PartnerStatement {
        partner_name: names.get(&partner_id).cloned().unwrap_or_default(),
        totals: Vec::new(),
        program_totals: Vec::new(),
        partner_id,
        customers,
        reporting_total: None,
        attainment: Vec::new(),
        tier_notes: Vec::new(),
    };
    p.totals = totals(p.lines(), &p.partner_id)?;
    p.program_totals = program_totals(p.lines(), &p.partner_id)?;
    Ok(p)
}

/// Puts the partner usage views on the statements (partners without a statement
/// keep theirs only in `partners/<id>/attainment.csv`).
pub fn attach_usage(set: &mut StatementSet, partners: &[PartnerUsage], notes: &[TierNote]) {
    for p in set.partners.iter_mut() {
        if let Some(u) = partners.iter().find(|u| u.partner_id == p.partner_id) {
            p.attainment = u.lines.clone();
        }
        let mut ns: Vec<TierNote> = notes
            .iter()
            .filter(|n| {
                p.lines()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accrue::Accrual;
    use crate::config::parse_rules;
    use crate::fold::Fold;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn cur(c: &str) -> Currency {
        Currency::parse(c).unwrap()
    }

    /// A statement set from accruals `(partner, customer, amount, currency)`
    /// of one program, under `rounding`.
    fn statements(rounding: &str, accruals: &[(&'static str, &str, &str, &str)]) -> StatementSet {
        let rules = parse_rules(&format!(
            "rounding = \"{rounding}\"\n[[program]]\nid = \"p\"\nassociations = [\"RESELLER\"]\nrate = \"0.01\"\n"
        ))
        .unwrap();
        let mut fold = Fold::new(1);
        for (i, (partner, customer, amount, currency)) in accruals.iter().enumerate() {
            let a = Accrual {
                program: 0,
                partner_id: partner,
                association: Association::Reseller,
                basis: d(amount) * Decimal::from(100),
                rate: d("0.01"),
                share: Decimal::ONE,
                amount: d(amount),
                designation: None,
                days: None,
                month: Month::from_ym(2026, 10),
            };
            // Each accrual on its own subscription: one group each, summed per line.
            fold.add(&a, customer, &format!("s{i}"), cur(currency));
        }
        let period: Period = "2026-10".parse().unwrap();
        build(
            &mut fold,
            &rules,
            &DesignationIndex::new(Vec::new()),
            period,
            None,
        )
        .unwrap()
    }

    fn line<'s>(set: &'s StatementSet, customer: &str, currency: &str) -> &'s StatementLine {
        set.partners[0]
            .lines()
            .find(|l| &*l.customer_id == customer && l.currency == cur(currency))
            .unwrap()
    }

    /// A fold of three partners with two customers each, in two currencies.
    fn three_partners() -> Fold {
        let mut fold = Fold::new(1);
        for (i, partner) in ["r3", "r1", "r2"].into_iter().enumerate() {
            for (j, customer) in ["c2", "c1"].into_iter().enumerate() {
                let amount = Decimal::new((i * 10 + j) as i64 + 5, 3);
                let a = crate::accrue::reseller_accrual(partner, amount, 10);
                let c = if j == 0 { "EUR" } else { "USD" };
                fold.add(&a, customer, &format!("s{j}"), cur(c));
            }
        }
        fold
    }

    #[test]
    fn built_a_partner_at_a_time_the_statements_are_the_same() {
        let rules = parse_rules(
            "[[program]]\nid = \"p\"\nassociations = [\"RESELLER\"]\nrate = \"0.01\"\n",
        )
        .unwrap();
        let index = DesignationIndex::new(Vec::new());
        let period: Period = "2026-10".parse().unwrap();
        let whole = build(&mut three_partners(), &rules, &index, period, None).unwrap();
        assert_eq!(whole.partners.len(), 3);
        let mut fold = three_partners();
        let groups =
            crate::spill::partner_groups(std::mem::take(&mut fold.details), Default::default());
        let b = Builder {
            rules: &rules,
            index: &index,
            period,
            reporting: None,
            batch_groups: 1,
        };
        let mut batches = Vec::new();
        // One thread: a batch holds at least a partner per thread.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| {
            build_each(
                groups.map(|g| Ok(g.unwrap())),
                &|c| fold.customer_name(c),
                &b,
                |e| e,
                |batch| {
                    batches.push(batch);
                    Ok(())
                },
            )
        })
        .unwrap();
        assert_eq!(batches.len(), 3, "one partner per batch");
        let mut summary: Vec<SummaryRow> = batches
            .iter()
            .rev()
            .flat_map(|b| b.summary.clone())
            .collect();
        sort_summary(&mut summary);
        assert_eq!(summary, whole.summary);
        let partners: Vec<PartnerStatement> =
            batches.into_iter().flat_map(|b| b.partners).collect();
        assert_eq!(partners, whole.partners);
    }

    #[test]
    fn a_line_sums_exactly_then_rounds_once() {
        // Three accruals of 0.4 cent: rounded one by one they would pay 0.
        let set = statements(
            "half-up",
            &[
                ("r1", "c1", "0.004", "EUR"),
                ("r1", "c1", "0.004", "EUR"),
                ("r1", "c1", "0.004", "EUR"),
            ],
        );
        let l = line(&set, "c1", "EUR");
        assert_eq!(l.accrual_exact, d("0.012"));
        assert_eq!(l.amount, d("0.01"));
        assert_eq!(l.lines, 3);
    }

    #[test]
    fn half_a_cent_follows_the_rounding_mode() {
        let cases = [
            ("half-up", "0.125", "0.13"),
            ("half-up", "-0.125", "-0.13"),
            ("half-even", "0.125", "0.12"),
            ("half-even", "0.135", "0.14"),
            ("down", "0.125", "0.12"),
            ("down", "0.129", "0.12"),
            ("down", "-0.129", "-0.12"),
        ];
        for (mode, exact, want) in cases {
            let set = statements(mode, &[("r1", "c1", exact, "EUR")]);
            assert_eq!(line(&set, "c1", "EUR").amount, d(want), "{mode} {exact}");
        }
        // Two accruals of 0.0625 are summed (0.125) before rounding: half-up
        // gives 0.13, where rounding each (0.06 + 0.06) would give 0.12.
        let set = statements(
            "half-up",
            &[("r1", "c1", "0.0625", "EUR"), ("r1", "c1", "0.0625", "EUR")],
        );
        assert_eq!(line(&set, "c1", "EUR").amount, d("0.13"));
        // Currencies without minor units round to whole units.
        let set = statements("half-even", &[("r1", "c1", "2.5", "JPY")]);
        assert_eq!(line(&set, "c1", "JPY").amount, d("2"));
    }

    #[test]
    fn currencies_are_never_added_together() {
        let set = statements(
            "half-up",
            &[
                ("r1", "c1", "10.001", "EUR"),
                ("r1", "c1", "20.004", "USD"),
                ("r1", "c2", "1.004", "EUR"),
            ],
        );
        let p = &set.partners[0];
        assert_eq!(p.lines().count(), 3);
        let totals: Vec<(String, Decimal)> = p
            .totals
            .iter()
            .map(|t| (t.currency.as_str().to_string(), t.amount))
            .collect();
        assert_eq!(
            totals,
            [
                ("EUR".to_string(), d("11.00")),
                ("USD".to_string(), d("20.00"))
            ]
        );
        assert!(
            p.reporting_total.is_none(),
            "no FX table: no converted total"
        );
    }

    #[test]
    fn a_currency_total_is_the_sum_of_its_rounded_lines() {
        // Two customers of half a cent each: each line rounds up to 0.01, and the
        // total is 0.02 (what the statement shows adds up), not round(0.010).
        let set = statements(
            "half-up",
            &[("r1", "c1", "0.005", "EUR"), ("r1", "c2", "0.005", "EUR")],
        );
        let p = &set.partners[0];
        let lines: Decimal = p.lines().map(|l| l.amount).sum();
        assert_eq!(lines, d("0.02"));
        assert_eq!(p.totals[0].amount, d("0.02"));
        let exact: Decimal = p.lines().map(|l| l.accrual_exact).sum();
        assert_eq!(exact, d("0.010"));
        // The summary row of the partner and program adds the same rounded lines.
        assert_eq!(set.summary[0].accrual_amount, d("0.02"));
        // Partners are separate statements with their own totals.
        let set = statements(
            "half-up",
            &[("r1", "c1", "0.005", "EUR"), ("r2", "c1", "0.004", "EUR")],
        );
        let amounts: Vec<Decimal> = set.partners.iter().map(|p| p.totals[0].amount).collect();
        assert_eq!(amounts, [d("0.01"), d("0.00")]);
    }
}
