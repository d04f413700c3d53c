//! The tie-out: what porledger expected each partner to earn (the run's
//! ledger) against what Microsoft says it paid (the earnings export).
//!
//! Pure: [`TieOut`] is an accumulator fed by the command with ledger rows
//! ([`TieOut::add_accrual`]), not-eligible rows ([`TieOut::add_not_eligible`])
//! and earnings rows ([`TieOut::add_earning`]); [`TieOut::finish`] classifies.
//!
//! # The grain
//!
//! Both sides are summed per **partner + porledger program + customer tenant +
//! subscription + month of the transaction + currency** before they are
//! compared (many-to-one both ways is normal: one billing line feeds several
//! levers, one earning sums many lines). IDs are compared as
//! [`crate::ingest::id_key`] normalises them (trimmed, case-insensitive).
//! Where an earning of a (partner, program, customer, month, currency) carries
//! no subscription, that whole group is compared without subscriptions.
//! porledger's ledger carries neither invoice number nor product, so those
//! columns of the export are shown but not part of the grain.
//!
//! # Classes
//!
//! See [`Class`]; `docs/tieout.md` explains each for partner managers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::Serialize;

use crate::config::earnings::{EarningsLabels, EarningsMatch};
use crate::config::Rules;
use crate::dates::Month;
use crate::error::Fatal;
use crate::ingest::id_key;
use crate::money::{format_exact, round_money, Currency, RoundingMode};

/// The class of one tie-out row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Paid and expected agree within the tolerance.
    Matched,
    /// Paid less than expected (same rate).
    Underpaid,
    /// Paid more than expected (same rate).
    Overpaid,
    /// The amounts differ and Microsoft's `earningRate` is not porledger's rate.
    RateDiffers,
    /// porledger accrued, Microsoft paid nothing (yet: see the row's reason).
    ExpectedNotPaid,
    /// Microsoft paid, porledger accrued nothing.
    PaidNotExpected,
    /// A correction row of Microsoft's (`reasonCode`, or no customer).
    Adjustment,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Matched,
        Class::Underpaid,
        Class::Overpaid,
        Class::RateDiffers,
        Class::ExpectedNotPaid,
        Class::PaidNotExpected,
        Class::Adjustment,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Class::Matched => "matched",
            Class::Underpaid => "underpaid",
            Class::Overpaid => "overpaid",
            Class::RateDiffers => "rate-differs",
            Class::ExpectedNotPaid => "expected-not-paid",
            Class::PaidNotExpected => "paid-not-expected",
            Class::Adjustment => "adjustment",
        }
    }
}

/// How the tie-out compares.
#[derive(Clone, Copy, Debug)]
pub struct TieSettings {
    /// Largest |paid - expected| (in the currency) that still ties out.
    pub tolerance: Decimal,
    /// The day the tie-out is made: earnings due after it are `not-yet-due`.
    pub as_of: NaiveDate,
    /// The run's rounding (expected amounts are rounded as statements are).
    pub rounding: RoundingMode,
}

/// One ledger row, as the tie-out needs it.
#[derive(Clone, Copy, Debug)]
pub struct Accrual<'a> {
    pub partner_id: &'a str,
    pub customer_id: &'a str,
    pub program_id: &'a str,
    pub subscription_id: &'a str,
    pub month: Month,
    pub currency: Currency,
    pub amount: Decimal,
    pub rate: Decimal,
    /// Line of the row in `ledger.csv`.
    pub ledger_line: u64,
}

/// One earnings row, as the tie-out needs it (see
/// [`crate::ingest::earnings::EarningRow`]).
#[derive(Clone, Copy, Debug)]
pub struct Earning<'a> {
    pub file: u32,
    pub line: u64,
    pub participant_id: &'a str,
    pub participant_name: &'a str,
    pub labels: EarningsLabels<'a>,
    pub customer_id: &'a str,
    pub customer_name: &'a str,
    pub subscription_id: &'a str,
    pub month: Month,
    pub currency: Currency,
    pub amount: Decimal,
    pub rate: Option<Decimal>,
    pub reason_code: &'a str,
}

/// The grain. Field order is the output order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    partner: String,
    month: Month,
    program: String,
    customer: String,
    subscription: String,
    currency: Currency,
}

/// A grain without the subscription.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Coarse {
    partner: String,
    month: Month,
    program: String,
    customer: String,
    currency: Currency,
}

impl Key {
    fn coarse(&self) -> Coarse {
        Coarse {
            partner: self.partner.clone(),
            month: self.month,
            program: self.program.clone(),
            customer: self.customer.clone(),
            currency: self.currency,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Shown {
    partner: String,
    customer: String,
    subscription: String,
}

#[derive(Clone, Debug, Default)]
struct Expected {
    amount: Decimal,
    rates: BTreeSet<Decimal>,
    lines: Vec<u64>,
    shown: Shown,
}

#[derive(Clone, Debug, Default)]
struct Paid {
    amount: Decimal,
    rates: BTreeSet<Decimal>,
    rows: Vec<(u32, u64)>,
    shown: Shown,
    partner_name: String,
    customer_name: String,
    /// programName / lever of the first row (named when no program maps it).
    labels: String,
}

/// An adjustment group: partner, month, currency, program (or ""), reason.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct AdjKey {
    partner: String,
    month: Month,
    program: String,
    currency: Currency,
    reason: String,
}

/// A not-eligible reason seen for a customer: how often, one example.
#[derive(Clone, Debug, Default)]
struct Miss {
    count: u64,
    detail: String,
    source: String,
}

/// The accumulator.
pub struct TieOut<'r> {
    rules: &'r Rules,
    settings: TieSettings,
    expected: HashMap<Key, Expected>,
    paid: HashMap<Key, Paid>,
    adjustments: HashMap<AdjKey, Paid>,
    /// (customer, subscription or "", month) -> reason -> miss.
    not_eligible: HashMap<(String, String, Month), BTreeMap<String, Miss>>,
    /// Customers that some earning names (the only not-eligible rows kept).
    partner_names: HashMap<String, String>,
    earnings_rows: u64,
}

/// One row of `tieout.csv`.
#[derive(Clone, Debug, Serialize)]
pub struct TieRow {
    pub id: String,
    pub class: Class,
    /// A short code: `not-yet-due`, `overdue`, `no-designation`, ...; empty
    /// where the class says it all.
    pub reason: String,
    pub partner_id: String,
    pub partner_name: String,
    pub program_id: String,
    pub customer_id: String,
    pub customer_name: String,
    pub subscription_id: String,
    pub month: Month,
    pub currency: Currency,
    /// Expected, rounded as statement lines are.
    pub expected: Decimal,
    pub paid: Decimal,
    /// paid - expected.
    pub difference: Decimal,
    /// porledger's rates (fractions), and Microsoft's `earningRate` (as fractions).
    pub porledger_rates: Vec<Decimal>,
    pub microsoft_rates: Vec<Decimal>,
    /// When Microsoft pays an expected earning (expected-not-paid).
    pub due: Option<NaiveDate>,
    pub explanation: String,
    /// Lines of `ledger.csv` behind the expected amount.
    pub ledger_lines: Vec<u64>,
    /// Earnings rows behind the paid amount: (file index, line).
    pub earnings_rows: Vec<(u32, u64)>,
    #[serde(skip)]
    partner_key: String,
}

impl TieRow {
    /// Whether this row is a difference someone must look at (exit code 1).
    pub fn is_difference(&self) -> bool {
        match self.class {
            Class::Matched | Class::Adjustment => false,
            Class::ExpectedNotPaid => self.reason != "not-yet-due",
            _ => true,
        }
    }
}

/// Sums of one partner, program, month and currency (or coarser).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub expected: Decimal,
    pub paid: Decimal,
    pub adjustments: Decimal,
    /// paid + adjustments - expected.
    pub difference: Decimal,
    pub rows: u64,
    pub differences: u64,
}

impl Totals {
    fn add(&mut self, r: &TieRow) -> Result<(), Fatal> {
        let sum = |a: Decimal, b: Decimal| {
            a.checked_add(b).ok_or_else(|| Fatal::Overflow {
                what: format!("tie-out totals of partner {}", r.partner_id),
                cause: "the sum exceeds the decimal range".into(),
            })
        };
        if r.class == Class::Adjustment {
            self.adjustments = sum(self.adjustments, r.paid)?;
        } else {
            self.expected = sum(self.expected, r.expected)?;
            self.paid = sum(self.paid, r.paid)?;
        }
        self.difference = sum(self.difference, r.difference)?;
        self.rows += 1;
        self.differences += r.is_difference() as u64;
        Ok(())
    }
}

/// The result.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub rows: Vec<TieRow>,
    /// Per partner (display ID), program, month, currency.
    pub totals: BTreeMap<(String, String, Month, Currency), Totals>,
    /// Per partner (display ID) and currency.
    pub partner_totals: BTreeMap<String, BTreeMap<Currency, Totals>>,
    /// Per class: rows.
    pub classes: BTreeMap<Class, u64>,
    /// Earnings rows in grains with an accrual / without / adjustments.
    pub earnings_matched: u64,
    pub earnings_unmatched: u64,
    pub earnings_adjustments: u64,
    /// Rows with [`TieRow::is_difference`].
    pub differences: u64,
    /// Partner display ID -> name.
    pub partner_names: BTreeMap<String, String>,
}

fn percent(r: Decimal) -> String {
    let p = (r * Decimal::ONE_HUNDRED).normalize();
    format!("{p} %")
}

fn percents(rs: &BTreeSet<Decimal>) -> String {
    rs.iter()
        .map(|r| percent(*r))
        .collect::<Vec<_>>()
        .join(", ")
}

fn add_checked(a: Decimal, b: Decimal, what: impl Fn() -> String) -> Result<Decimal, Fatal> {
    a.checked_add(b).ok_or_else(|| Fatal::Overflow {
        what: what(),
        cause: "the sum exceeds the decimal range".into(),
    })
}

impl<'r> TieOut<'r> {
    pub fn new(rules: &'r Rules, settings: TieSettings) -> TieOut<'r> {
        TieOut {
            rules,
            settings,
            expected: HashMap::new(),
            paid: HashMap::new(),
            adjustments: HashMap::new(),
            not_eligible: HashMap::new(),
            partner_names: HashMap::new(),
            earnings_rows: 0,
        }
    }

    /// A partner's name (from the run's summary).
    pub fn add_partner_name(&mut self, partner_id: &str, name: &str) {
        if !name.is_empty() {
            self.partner_names
                .entry(id_key(partner_id))
                .or_insert_with(|| name.to_string());
        }
    }

    /// The porledger program an earning pays for, by the rules' `earnings`
    /// tables (first program in file order), or `None`.
    pub fn program_of(&self, labels: &EarningsLabels<'_>) -> Option<&'r str> {
        self.rules
            .programs
            .iter()
            .find(|p| p.earnings.iter().any(|m: &EarningsMatch| m.matches(labels)))
            .map(|p| p.id.as_str())
    }

    pub fn add_accrual(&mut self, a: &Accrual<'_>) -> Result<(), Fatal> {
        let key = Key {
            partner: id_key(a.partner_id),
            month: a.month,
            program: a.program_id.to_string(),
            customer: id_key(a.customer_id),
            subscription: id_key(a.subscription_id),
            currency: a.currency,
        };
        let e = self.expected.entry(key).or_insert_with(|| Expected {
            shown: Shown {
                partner: a.partner_id.to_string(),
                customer: a.customer_id.to_string(),
                subscription: a.subscription_id.to_string(),
            },
            ..Expected::default()
        });
        e.amount = add_checked(e.amount, a.amount, || {
            format!(
                "expected amount of partner {}, customer {}",
                a.partner_id, a.customer_id
            )
        })?;
        e.rates.insert(a.rate.normalize());
        e.lines.push(a.ledger_line);
        Ok(())
    }

    /// A row of the run's `not-eligible.csv`: the closest reason for an
    /// earning porledger did not expect. Only customers are kept that the
    /// earnings name, so call this after every [`TieOut::add_earning`].
    pub fn add_not_eligible(
        &mut self,
        customer_id: &str,
        subscription_id: &str,
        month: Month,
        reason: &str,
        detail: &str,
        source: &str,
    ) {
        let c = id_key(customer_id);
        for sub in [id_key(subscription_id), String::new()] {
            let k = (c.clone(), sub, month);
            let m = self.not_eligible.entry(k).or_default();
            let miss = m.entry(reason.to_string()).or_default();
            if miss.count == 0 {
                miss.detail = detail.to_string();
                miss.source = source.to_string();
            }
            miss.count += 1;
        }
    }

    /// The customers earnings name (to filter not-eligible rows while reading).
    pub fn earning_customers(&self) -> HashSet<String> {
        self.paid.keys().map(|k| k.customer.clone()).collect()
    }

    pub fn add_earning(&mut self, e: &Earning<'_>) -> Result<(), Fatal> {
        self.earnings_rows += 1;
        let program = self.program_of(&e.labels).unwrap_or("").to_string();
        let what = || format!("earnings of partner {} in {}", e.participant_id, e.currency);
        let labels = format!(
            "programName '{}', lever '{}'",
            e.labels.program_name, e.labels.lever
        );
        if !e.reason_code.is_empty() || e.customer_id.is_empty() {
            let reason = if e.reason_code.is_empty() {
                "(no customer)".to_string()
            } else {
                e.reason_code.to_string()
            };
            let k = AdjKey {
                partner: id_key(e.participant_id),
                month: e.month,
                program,
                currency: e.currency,
                reason,
            };
            let p = self.adjustments.entry(k).or_insert_with(|| Paid {
                shown: Shown {
                    partner: e.participant_id.to_string(),
                    ..Shown::default()
                },
                partner_name: e.participant_name.to_string(),
                labels: labels.clone(),
                ..Paid::default()
            });
            p.amount = add_checked(p.amount, e.amount, what)?;
            p.rows.push((e.file, e.line));
            return Ok(());
        }
        let key = Key {
            partner: id_key(e.participant_id),
            month: e.month,
            program,
            customer: id_key(e.customer_id),
            subscription: id_key(e.subscription_id),
            currency: e.currency,
        };
        let p = self.paid.entry(key).or_insert_with(|| Paid {
            shown: Shown {
                partner: e.participant_id.to_string(),
                customer: e.customer_id.to_string(),
                subscription: e.subscription_id.to_string(),
            },
            partner_name: e.participant_name.to_string(),
            customer_name: e.customer_name.to_string(),
            labels,
            ..Paid::default()
        });
        p.amount = add_checked(p.amount, e.amount, what)?;
        if let Some(r) = e.rate {
            p.rates.insert(r.normalize());
        }
        p.rows.push((e.file, e.line));
        Ok(())
    }

    /// Compares and classifies.
    pub fn finish(mut self) -> Result<Report, Fatal> {
        // Groups where an earning has no subscription are compared without.
        let coarse: HashSet<Coarse> = self
            .paid
            .keys()
            .filter(|k| k.subscription.is_empty())
            .map(Key::coarse)
            .collect();
        if !coarse.is_empty() {
            self.expected = collapse(
                std::mem::take(&mut self.expected),
                &coarse,
                |e| e.shown.subscription.clear(),
                |a, b| {
                    a.amount = add_checked(a.amount, b.amount, || "expected amount".into())?;
                    a.rates.extend(b.rates);
                    a.lines.extend(b.lines);
                    Ok(())
                },
            )?;
            self.paid = collapse(
                std::mem::take(&mut self.paid),
                &coarse,
                |p| p.shown.subscription.clear(),
                |a, b| {
                    a.amount = add_checked(a.amount, b.amount, || "paid amount".into())?;
                    a.rates.extend(b.rates);
                    a.rows.extend(b.rows);
                    Ok(())
                },
            )?;
        }
        // Who porledger credits per customer and month (for paid-not-expected).
        let mut credited: HashMap<(String, Month), BTreeSet<(String, String)>> = HashMap::new();
        for (k, e) in &self.expected {
            credited
                .entry((k.customer.clone(), k.month))
                .or_default()
                .insert((e.shown.partner.clone(), k.program.clone()));
        }
        let keys: BTreeSet<&Key> = self.expected.keys().chain(self.paid.keys()).collect();
        let mut report = Report::default();
        let mut rows = Vec::with_capacity(keys.len() + self.adjustments.len());
        for k in keys {
            let row = self.classify(k, &credited, &mut report);
            rows.push(row);
        }
        for (k, p) in &self.adjustments {
            report.earnings_adjustments += p.rows.len() as u64;
            let name = self.name_of(&k.partner, &p.partner_name);
            let amount = p.amount;
            let program = if k.program.is_empty() {
                "no porledger program".to_string()
            } else {
                format!("program {}", k.program)
            };
            rows.push(TieRow {
                id: String::new(),
                class: Class::Adjustment,
                reason: k.reason.clone(),
                partner_id: p.shown.partner.clone(),
                partner_name: name,
                program_id: k.program.clone(),
                customer_id: String::new(),
                customer_name: String::new(),
                subscription_id: String::new(),
                month: k.month,
                currency: k.currency,
                expected: Decimal::ZERO,
                paid: amount,
                difference: amount,
                porledger_rates: Vec::new(),
                microsoft_rates: Vec::new(),
                due: None,
                explanation: format!(
                    "Microsoft adjustment '{}' of {} {} for {} ({} row{}, {}): a correction \
                     Microsoft makes without naming billing lines; listed, not matched.",
                    k.reason,
                    format_exact(amount, k.currency),
                    k.currency,
                    k.month,
                    p.rows.len(),
                    if p.rows.len() == 1 { "" } else { "s" },
                    program
                ),
                ledger_lines: Vec::new(),
                earnings_rows: sorted(p.rows.clone()),
                partner_key: k.partner.clone(),
            });
        }
        rows.sort_by(|a, b| {
            (
                &a.partner_key,
                a.month,
                a.class == Class::Adjustment,
                &a.program_id,
            )
                .cmp(&(
                    &b.partner_key,
                    b.month,
                    b.class == Class::Adjustment,
                    &b.program_id,
                ))
                .then_with(|| {
                    (&a.customer_id, &a.subscription_id, a.currency, &a.reason).cmp(&(
                        &b.customer_id,
                        &b.subscription_id,
                        b.currency,
                        &b.reason,
                    ))
                })
        });
        for (i, r) in rows.iter_mut().enumerate() {
            r.id = format!("T{:06}", i + 1);
            *report.classes.entry(r.class).or_default() += 1;
            report.differences += r.is_difference() as u64;
            report
                .totals
                .entry((
                    r.partner_id.clone(),
                    r.program_id.clone(),
                    r.month,
                    r.currency,
                ))
                .or_default()
                .add(r)?;
            report
                .partner_totals
                .entry(r.partner_id.clone())
                .or_default()
                .entry(r.currency)
                .or_default()
                .add(r)?;
            report
                .partner_names
                .entry(r.partner_id.clone())
                .or_insert_with(|| r.partner_name.clone());
        }
        report.rows = rows;
        Ok(report)
    }

    fn name_of(&self, partner_key: &str, fallback: &str) -> String {
        self.partner_names
            .get(partner_key)
            .cloned()
            .unwrap_or_else(|| fallback.to_string())
    }

    fn due(&self, k: &Key) -> NaiveDate {
        let (months, day) = self
            .rules
            .programs
            .iter()
            .find(|p| p.id == k.program)
            .map(|p| (p.earnings_due_months, p.earnings_due_day))
            .unwrap_or((1, 16));
        k.month.plus(months).day(day).unwrap_or(k.month.last_day())
    }

    fn classify(
        &self,
        k: &Key,
        credited: &HashMap<(String, Month), BTreeSet<(String, String)>>,
        report: &mut Report,
    ) -> TieRow {
        let tol = self.settings.tolerance;
        let e = self.expected.get(k);
        let p = self.paid.get(k);
        let cur = k.currency;
        let expected = e
            .map(|e| round_money(e.amount, cur, self.settings.rounding))
            .unwrap_or_default();
        let paid = p.map(|p| p.amount).unwrap_or_default();
        let difference = paid - expected;
        let shown = e.map(|e| &e.shown).or(p.map(|p| &p.shown));
        let shown = shown.cloned().unwrap_or_default();
        let money = |d: Decimal| format!("{} {}", format_exact(d, cur), cur);
        let lines = e.map(|e| e.lines.len()).unwrap_or(0);
        let n_rows = p.map(|p| p.rows.len()).unwrap_or(0);
        let lines_text = format!("{lines} billing line{}", if lines == 1 { "" } else { "s" });
        let rows_text = format!(
            "{n_rows} earnings row{}",
            if n_rows == 1 { "" } else { "s" }
        );
        match (e.is_some(), p.is_some()) {
            (true, _) => report.earnings_matched += n_rows as u64,
            _ => report.earnings_unmatched += n_rows as u64,
        }
        let e_rates: BTreeSet<Decimal> = e.map(|e| e.rates.clone()).unwrap_or_default();
        let p_rates: BTreeSet<Decimal> = p.map(|p| p.rates.clone()).unwrap_or_default();
        let mut due = None;
        let (class, reason, explanation) =
            match (e, p) {
                (Some(_), Some(_)) if difference.abs() <= tol => (
                    Class::Matched,
                    String::new(),
                    format!(
                        "Microsoft paid {} and porledger expected {} ({lines_text}, {rows_text}): \
                     the difference {} is within the tolerance of {tol}.",
                        money(paid),
                        money(expected),
                        money(difference)
                    ),
                ),
                (Some(_), Some(_)) if !p_rates.is_empty() && !p_rates.is_subset(&e_rates) => {
                    (
                        Class::RateDiffers,
                        "rate".to_string(),
                        format!(
                    "Microsoft paid {} at an earning rate of {}; porledger's rule pays {} and \
                     expected {} ({lines_text}): Microsoft paid {} {}.",
                    money(paid),
                    percents(&p_rates),
                    percents(&e_rates),
                    money(expected),
                    money(difference.abs()),
                    if difference < Decimal::ZERO { "less" } else { "more" }
                ),
                    )
                }
                (Some(_), Some(_)) => {
                    let under = difference < Decimal::ZERO;
                    (
                        if under {
                            Class::Underpaid
                        } else {
                            Class::Overpaid
                        },
                        String::new(),
                        format!(
                            "Microsoft paid {} ({rows_text}), {} {} than porledger expected: {} \
                         from {lines_text} at {}.",
                            money(paid),
                            money(difference.abs()),
                            if under { "less" } else { "more" },
                            money(expected),
                            percents(&e_rates)
                        ),
                    )
                }
                (Some(_), None) if expected.abs() <= tol => (
                    Class::Matched,
                    String::new(),
                    format!(
                        "porledger expected {} ({lines_text}), within the tolerance of {tol} of \
                     nothing, and Microsoft paid nothing.",
                        money(expected)
                    ),
                ),
                (Some(_), None) => {
                    let d = self.due(k);
                    due = Some(d);
                    if self.settings.as_of < d {
                        (
                            Class::ExpectedNotPaid,
                            "not-yet-due".to_string(),
                            format!(
                            "porledger expected {} for {} ({lines_text}); Microsoft pays it by \
                             {d}, which is after {}: not yet due.",
                            money(expected),
                            k.month,
                            self.settings.as_of
                        ),
                        )
                    } else {
                        (
                            Class::ExpectedNotPaid,
                            "overdue".to_string(),
                            format!(
                                "porledger expected {} for {} ({lines_text}) and Microsoft paid \
                             nothing; it was due by {d}.",
                                money(expected),
                                k.month
                            ),
                        )
                    }
                }
                (None, Some(p)) if paid.abs() <= tol => (
                    Class::Matched,
                    String::new(),
                    format!(
                        "Microsoft paid {} ({rows_text}, {}), within the tolerance of {tol} of \
                     nothing, and porledger expected nothing.",
                        money(paid),
                        p.labels
                    ),
                ),
                (None, Some(p)) => {
                    let (reason, why) = self.closest_reason(k, p, credited);
                    (
                        Class::PaidNotExpected,
                        reason,
                        format!(
                            "Microsoft paid {} ({rows_text}) that porledger did not expect: {why}",
                            money(paid)
                        ),
                    )
                }
                (None, None) => (Class::Matched, String::new(), String::new()),
            };
        TieRow {
            id: String::new(),
            class,
            reason,
            partner_name: self
                .name_of(&k.partner, p.map(|p| p.partner_name.as_str()).unwrap_or("")),
            partner_id: shown.partner,
            program_id: k.program.clone(),
            customer_id: shown.customer,
            customer_name: p.map(|p| p.customer_name.clone()).unwrap_or_default(),
            subscription_id: shown.subscription,
            month: k.month,
            currency: cur,
            expected,
            paid,
            difference,
            porledger_rates: e_rates.into_iter().collect(),
            microsoft_rates: p_rates.into_iter().collect(),
            due,
            explanation,
            ledger_lines: e.map(|e| sorted(e.lines.clone())).unwrap_or_default(),
            earnings_rows: p.map(|p| sorted(p.rows.clone())).unwrap_or_default(),
            partner_key: k.partner.clone(),
        }
    }

    /// Why porledger expected nothing for an earning: a code and words.
    fn closest_reason(
        &self,
        k: &Key,
        p: &Paid,
        credited: &HashMap<(String, Month), BTreeSet<(String, String)>>,
    ) -> (String, String) {
        if k.program.is_empty() {
            return (
                "no-program".into(),
                format!(
                    "its {} maps to no porledger program; add a [[program.earnings]] table \
                     for it to the rules (docs/rules.md).",
                    p.labels
                ),
            );
        }
        if let Some(who) = credited.get(&(k.customer.clone(), k.month)) {
            let others: Vec<String> = who
                .iter()
                .filter(|(partner, program)| id_key(partner) != k.partner && *program == k.program)
                .map(|(partner, _)| partner.clone())
                .collect();
            if !others.is_empty() {
                return (
                    "credited-to-another-partner".into(),
                    format!(
                        "porledger credits {} on this customer in {} under {}, not this \
                         partner (check the designations).",
                        others.join(", "),
                        k.month,
                        k.program
                    ),
                );
            }
            let programs: Vec<String> = who
                .iter()
                .filter(|(partner, program)| id_key(partner) == k.partner && *program != k.program)
                .map(|(_, program)| program.clone())
                .collect();
            if !programs.is_empty() {
                return (
                    "other-program".into(),
                    format!(
                        "porledger pays this partner for this customer in {} under {} instead \
                         (check the [[program.earnings]] patterns).",
                        k.month,
                        programs.join(", ")
                    ),
                );
            }
        }
        let miss = self
            .not_eligible
            .get(&(k.customer.clone(), k.subscription.clone(), k.month))
            .or_else(|| {
                self.not_eligible
                    .get(&(k.customer.clone(), String::new(), k.month))
            });
        if let Some(m) = miss {
            // The most frequent reason, then the first by name.
            if let Some((reason, miss)) = m
                .iter()
                .max_by(|a, b| a.1.count.cmp(&b.1.count).then_with(|| b.0.cmp(a.0)))
            {
                let words = match reason.as_str() {
                    "no-designation" => "the customer's billing lines earn nothing because no partner holds a designation porledger pays for it",
                    "outside-window" => "the designation is older than the program's window",
                    "excluded-product" => "the product is excluded by the rules (publisher or qualifier such as Trial)",
                    "rule-not-in-force" => "no program was in force on the charge date",
                    "not-revenue" => "the line is not revenue (a tax row)",
                    _ => "porledger found the customer's billing lines not eligible",
                };
                return (
                    reason.clone(),
                    format!(
                        "{words} ({} line{} not eligible in {}, e.g. {}{}).",
                        miss.count,
                        if miss.count == 1 { "" } else { "s" },
                        k.month,
                        miss.source,
                        if miss.detail.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", miss.detail)
                        }
                    ),
                );
            }
        }
        (
            "no-billing-line".into(),
            format!(
                "porledger read no billing line of this customer in {} (an export missing \
                 from the run, or a month outside its period).",
                k.month
            ),
        )
    }
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v
}

/// Moves every entry whose coarse key is in `coarse` to the key without
/// subscription (`clear` drops the shown subscription), merging with `merge`.
fn collapse<V>(
    map: HashMap<Key, V>,
    coarse: &HashSet<Coarse>,
    clear: impl Fn(&mut V),
    mut merge: impl FnMut(&mut V, V) -> Result<(), Fatal>,
) -> Result<HashMap<Key, V>, Fatal> {
    let mut out: HashMap<Key, V> = HashMap::with_capacity(map.len());
    for (mut k, mut v) in map {
        if coarse.contains(&k.coarse()) {
            k.subscription.clear();
            clear(&mut v);
        }
        match out.get_mut(&k) {
            Some(a) => merge(a, v)?,
            None => {
                out.insert(k, v);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_rules;
    use proptest::prelude::*;

    const RULES: &str = r#"
[[program]]
id = "core"
associations = ["POR"]
rate = "0.04"
[[program.earnings]]
partnerAssociation = "POR"

[[program]]
id = "usage"
associations = ["PAL"]
rate = "0.01"
earnings_due_months = 2
earnings_due_day = 10
[[program.earnings]]
lever = "*usage*"
"#;

    fn rules() -> Rules {
        parse_rules(RULES).unwrap()
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn settings(tol: &str) -> TieSettings {
        TieSettings {
            tolerance: d(tol),
            as_of: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            rounding: RoundingMode::HalfUp,
        }
    }

    fn accrual<'a>(
        partner: &'a str,
        customer: &'a str,
        sub: &'a str,
        m: Month,
        amount: &str,
        line: u64,
    ) -> Accrual<'a> {
        Accrual {
            partner_id: partner,
            customer_id: customer,
            program_id: "core",
            subscription_id: sub,
            month: m,
            currency: eur(),
            amount: d(amount),
            rate: d("0.04"),
            ledger_line: line,
        }
    }

    fn earning<'a>(
        partner: &'a str,
        customer: &'a str,
        sub: &'a str,
        m: Month,
        amount: &str,
        rate: Option<&str>,
        line: u64,
    ) -> Earning<'a> {
        Earning {
            file: 0,
            line,
            participant_id: partner,
            participant_name: "P",
            labels: EarningsLabels {
                program_name: "CSP",
                lever: "Core",
                engagement_name: "",
                partner_association: "POR",
            },
            customer_id: customer,
            customer_name: "",
            subscription_id: sub,
            month: m,
            currency: eur(),
            amount: d(amount),
            rate: rate.map(d),
            reason_code: "",
        }
    }

    const JAN: Month = Month::from_ym(2026, 1);
    const FEB: Month = Month::from_ym(2026, 2);

    fn one(report: &Report) -> &TieRow {
        assert_eq!(report.rows.len(), 1, "{:#?}", report.rows);
        &report.rows[0]
    }

    #[test]
    fn matched_many_to_one_both_ways_and_case_insensitive_ids() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("500275", "C1", "S1", JAN, "1.001", 2))
            .unwrap();
        t.add_accrual(&accrual("500275", "C1", "S1", JAN, "2.003", 3))
            .unwrap();
        t.add_earning(&earning("500275", "c1", "s1", JAN, "1.5", Some("0.04"), 2))
            .unwrap();
        t.add_earning(&earning("500275", "c1", "s1", JAN, "1.5", Some("0.04"), 3))
            .unwrap();
        let rep = t.finish().unwrap();
        let row = one(&rep);
        assert_eq!(row.class, Class::Matched);
        assert_eq!(row.expected, d("3.00"));
        assert_eq!(row.ledger_lines, vec![2, 3]);
        assert_eq!(row.earnings_rows, vec![(0, 2), (0, 3)]);
        assert_eq!(rep.earnings_matched, 2);
        assert_eq!(rep.differences, 0);
    }

    #[test]
    fn tolerance_is_inclusive_at_the_boundary() {
        for (paid, class) in [
            ("9.99", Class::Matched),
            ("10.01", Class::Matched),
            ("9.98", Class::Underpaid),
            ("10.02", Class::Overpaid),
        ] {
            let r = rules();
            let mut t = TieOut::new(&r, settings("0.01"));
            t.add_accrual(&accrual("1", "C", "S", JAN, "10", 2))
                .unwrap();
            t.add_earning(&earning("1", "C", "S", JAN, paid, Some("0.04"), 2))
                .unwrap();
            let rep = t.finish().unwrap();
            assert_eq!(one(&rep).class, class, "paid {paid}");
        }
    }

    #[test]
    fn underpaid_and_overpaid_say_the_difference() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "10", 2))
            .unwrap();
        t.add_earning(&earning("1", "C", "S", JAN, "8", None, 2))
            .unwrap();
        let rep = t.finish().unwrap();
        let row = one(&rep);
        assert_eq!(row.class, Class::Underpaid);
        assert_eq!(row.difference, d("-2.00"));
        assert!(
            row.explanation.contains("2.00 EUR less"),
            "{}",
            row.explanation
        );
        assert_eq!(rep.differences, 1);
    }

    #[test]
    fn rate_differs_names_both_rates() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "40", 2))
            .unwrap();
        t.add_earning(&earning("1", "C", "S", JAN, "30", Some("0.03"), 2))
            .unwrap();
        let rep = t.finish().unwrap();
        let row = one(&rep);
        assert_eq!(row.class, Class::RateDiffers);
        assert!(row.explanation.contains("3 %"), "{}", row.explanation);
        assert!(row.explanation.contains("4 %"), "{}", row.explanation);
        assert_eq!(row.microsoft_rates, vec![d("0.03")]);
    }

    #[test]
    fn expected_not_paid_overdue_or_not_yet_due() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "5", 2)).unwrap();
        t.add_accrual(&accrual("1", "C", "S", FEB, "5", 3)).unwrap();
        let rep = t.finish().unwrap();
        assert_eq!(rep.rows.len(), 2);
        // January: due 2026-02-16, before 2026-03-01.
        assert_eq!(rep.rows[0].class, Class::ExpectedNotPaid);
        assert_eq!(rep.rows[0].reason, "overdue");
        assert!(rep.rows[0].is_difference());
        // February: due 2026-03-16, after 2026-03-01.
        assert_eq!(rep.rows[1].reason, "not-yet-due");
        assert_eq!(rep.rows[1].due, NaiveDate::from_ymd_opt(2026, 3, 16));
        assert!(!rep.rows[1].is_difference());
        assert_eq!(rep.differences, 1);
    }

    #[test]
    fn paid_not_expected_gets_the_closest_reason() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_earning(&earning("1", "NODES", "S", JAN, "5", None, 2))
            .unwrap();
        t.add_earning(&earning("1", "OTHER", "S", JAN, "5", None, 3))
            .unwrap();
        t.add_earning(&earning("1", "NOTHING", "S", JAN, "5", None, 4))
            .unwrap();
        let mut unmapped = earning("1", "X", "S", JAN, "5", None, 5);
        unmapped.labels.partner_association = "Tier1";
        t.add_earning(&unmapped).unwrap();
        t.add_accrual(&accrual("2", "OTHER", "S", JAN, "5", 9))
            .unwrap();
        t.add_not_eligible("nodes", "s", JAN, "no-designation", "", "b.csv:7");
        let rep = t.finish().unwrap();
        let reason = |c: &str| {
            rep.rows
                .iter()
                .find(|r| r.customer_id == c && r.partner_id == "1")
                .map(|r| (r.class, r.reason.clone()))
                .unwrap()
        };
        assert_eq!(
            reason("NODES"),
            (Class::PaidNotExpected, "no-designation".into())
        );
        assert_eq!(
            reason("OTHER"),
            (Class::PaidNotExpected, "credited-to-another-partner".into())
        );
        assert_eq!(
            reason("NOTHING"),
            (Class::PaidNotExpected, "no-billing-line".into())
        );
        assert_eq!(reason("X"), (Class::PaidNotExpected, "no-program".into()));
        assert_eq!(rep.earnings_unmatched, 4);
    }

    #[test]
    fn adjustments_are_listed_per_month_and_reason_never_matched() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "5", 2)).unwrap();
        t.add_earning(&earning("1", "C", "S", JAN, "5", None, 2))
            .unwrap();
        let mut adj = earning("1", "", "", JAN, "-3", None, 3);
        adj.reason_code = "";
        t.add_earning(&adj).unwrap();
        let mut adj2 = earning("1", "C", "S", JAN, "1", None, 4);
        adj2.reason_code = "Ops Adjustment";
        t.add_earning(&adj2).unwrap();
        let rep = t.finish().unwrap();
        let classes: Vec<_> = rep
            .rows
            .iter()
            .map(|r| (r.class, r.reason.as_str()))
            .collect();
        assert_eq!(
            classes,
            vec![
                (Class::Matched, ""),
                (Class::Adjustment, "(no customer)"),
                (Class::Adjustment, "Ops Adjustment")
            ]
        );
        assert_eq!(rep.earnings_adjustments, 2);
        let tot = &rep.partner_totals["1"][&eur()];
        assert_eq!(tot.adjustments, d("-2"));
        assert_eq!(tot.difference, d("-2.00"));
        assert_eq!(rep.differences, 0);
    }

    #[test]
    fn currencies_are_separate_grains() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "5", 2)).unwrap();
        let mut usd = earning("1", "C", "S", JAN, "5", None, 2);
        usd.currency = Currency::parse("USD").unwrap();
        t.add_earning(&usd).unwrap();
        let rep = t.finish().unwrap();
        let classes: Vec<_> = rep
            .rows
            .iter()
            .map(|r| (r.class, r.currency.as_str()))
            .collect();
        assert_eq!(
            classes,
            vec![
                (Class::ExpectedNotPaid, "EUR"),
                (Class::PaidNotExpected, "USD")
            ]
        );
    }

    #[test]
    fn an_earning_without_subscription_compares_the_whole_customer_month() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S1", JAN, "5", 2))
            .unwrap();
        t.add_accrual(&accrual("1", "C", "S2", JAN, "5", 3))
            .unwrap();
        t.add_earning(&earning("1", "C", "", JAN, "10", None, 2))
            .unwrap();
        let rep = t.finish().unwrap();
        let row = one(&rep);
        assert_eq!(row.class, Class::Matched);
        assert_eq!(row.subscription_id, "");
        assert_eq!(row.ledger_lines, vec![2, 3]);
    }

    #[test]
    fn programs_map_by_the_earnings_tables_and_due_dates_follow_the_program() {
        let r = rules();
        let t = TieOut::new(&r, settings("0.01"));
        let l = |lever| EarningsLabels {
            program_name: "",
            lever,
            engagement_name: "",
            partner_association: "",
        };
        assert_eq!(t.program_of(&l("Modern Work Usage")), Some("usage"));
        assert_eq!(t.program_of(&l("Core")), None);
        let k = Key {
            partner: "1".into(),
            month: JAN,
            program: "usage".into(),
            customer: "c".into(),
            subscription: String::new(),
            currency: eur(),
        };
        assert_eq!(t.due(&k), NaiveDate::from_ymd_opt(2026, 3, 10).unwrap());
    }

    proptest! {
        /// An export generated from the run's own accruals (one earning per
        /// grain, rounded to the cent as Microsoft does) ties out: only `matched`.
        #[test]
        fn an_export_of_the_runs_own_accruals_only_matches(
            lines in proptest::collection::vec(
                (0u8..3, 0u8..4, 0u8..3, 0u8..3, 0u8..2, -100_000i64..1_000_000, 1u32..4),
                1..60,
            )
        ) {
            let r = rules();
            let mut t = TieOut::new(&r, settings("0.01"));
            let ids = ["a", "b", "c", "d"];
            let curs = [eur(), Currency::parse("USD").unwrap()];
            let mut grains: BTreeMap<(u8, u8, u8, u8, u8), Decimal> = BTreeMap::new();
            for (n, &(p, c, s, m, cur, cents, scale)) in lines.iter().enumerate() {
                let amount = Decimal::new(cents, scale);
                let mut a = accrual(ids[p as usize], ids[c as usize], ids[s as usize],
                    Month::from_ym(2026, 1 + m as u32), "0", n as u64 + 2);
                a.amount = amount;
                a.currency = curs[cur as usize];
                t.add_accrual(&a).unwrap();
                *grains.entry((p, c, s, m, cur)).or_default() += amount;
            }
            for (n, (&(p, c, s, m, cur), amount)) in grains.iter().enumerate() {
                let cur = curs[cur as usize];
                let paid = round_money(*amount, cur, RoundingMode::HalfUp).to_string();
                let mut e = earning(ids[p as usize], ids[c as usize], ids[s as usize],
                    Month::from_ym(2026, 1 + m as u32), &paid, Some("0.04"), n as u64 + 2);
                e.currency = cur;
                t.add_earning(&e).unwrap();
            }
            let rep = t.finish().unwrap();
            prop_assert!(rep.rows.iter().all(|r| r.class == Class::Matched),
                "{:#?}", rep.rows.iter().filter(|r| r.class != Class::Matched).collect::<Vec<_>>());
            prop_assert_eq!(rep.differences, 0);
            prop_assert_eq!(rep.earnings_matched, grains.len() as u64);
        }
    }
}
