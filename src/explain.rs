//! `porledger explain`: how each amount of a finished run came about, from the
//! run's own outputs (ledger.csv, summary.json, manifest.json and the statement),
//! so that a finance reviewer can check a statement line by hand.
//!
//! The command (`cmd::explain`) reads the run's files into a [`RunRecord`];
//! [`render_explanation`] is pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::Decimal;

use crate::money::{format_exact, round_money, Currency, RoundingMode};

/// One ledger row, as written by `run` (read by [`crate::ledger::LedgerReader`]).
pub use crate::ledger::LedgerRecord as LedgerRow;

/// What to explain.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub partner: String,
    pub customer: Option<String>,
    pub program: Option<String>,
}

/// Everything the explanation needs, read from a run's output directory.
pub struct RunRecord {
    pub period: String,
    pub rounding: RoundingMode,
    pub partner_name: String,
    pub rows: Vec<LedgerRow>,
    /// (customer, program, accrual month or `total`, currency) -> amount
    /// printed on the partner statement.
    pub statement: BTreeMap<(String, String, String, String), String>,
    /// (customer, program) -> how tiered rates were chosen (`tier_rate` rows).
    pub tiers: BTreeMap<(String, String), Vec<String>>,
    /// designation line -> the designation row's text, when the designations
    /// file named in the manifest is still there unchanged.
    pub designations: BTreeMap<String, String>,
    pub designations_file: String,
}

/// The explanation as text: every ledger line, grouped by statement line, with
/// the sum of exact amounts and the rounding step.
pub fn render_explanation(r: &RunRecord, filter: &Filter) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Partner {} ({}), period {}, rounding {} to the currency's minor unit",
        filter.partner,
        if r.partner_name.is_empty() {
            "no name in the designations"
        } else {
            &r.partner_name
        },
        r.period,
        r.rounding.as_str()
    );
    if r.rows.is_empty() {
        let _ = writeln!(
            s,
            "\nno ledger line matches: this partner earned nothing here in the period"
        );
        return s;
    }
    // One group per statement line: customer, program, currency, accrual month.
    type Key<'a> = (&'a str, &'a str, Currency, &'a str);
    let mut groups: BTreeMap<Key, Vec<&LedgerRow>> = BTreeMap::new();
    for row in &r.rows {
        groups
            .entry((
                &row.customer_id,
                &row.program_id,
                row.currency,
                &row.accrual_month,
            ))
            .or_default()
            .push(row);
    }
    let statement_says = |customer: &str, program: &str, month: &str, currency: Currency| {
        r.statement.get(&(
            customer.to_string(),
            program.to_string(),
            month.to_string(),
            currency.to_string(),
        ))
    };
    let check = |says: Option<&String>, rounded: Decimal| match says {
        Some(v) if *v == rounded.to_string() => "matches the statement".to_string(),
        Some(v) => format!("STATEMENT SAYS {v}: the outputs were changed after the run"),
        None if filter.customer.is_some() || filter.program.is_some() => "statement line".into(),
        None => "statement not found".into(),
    };
    let mut totals: BTreeMap<Currency, Decimal> = BTreeMap::new();
    // The months of the current customer, program and currency so far.
    let mut months: (usize, Decimal) = (0, Decimal::ZERO);
    let keys: Vec<&Key> = groups.keys().collect();
    for (gi, ((customer, program, currency, month), rows)) in groups.iter().enumerate() {
        let _ = writeln!(
            s,
            "\ncustomer {customer}, program {program}, {currency}, accrual month {month}"
        );
        for t in r
            .tiers
            .get(&(customer.to_string(), program.to_string()))
            .into_iter()
            .flatten()
        {
            let _ = writeln!(s, "  attainment tier: {t}");
        }
        let mut sum = Decimal::ZERO;
        for row in rows {
            let designation = match row.designation_line.as_str() {
                "" => format!("{} from the billing line", row.association),
                l => match r.designations.get(l) {
                    Some(text) => format!(
                        "{} by {}:{l} [{text}]",
                        row.association, r.designations_file
                    ),
                    None => format!("{} by {}:{l}", row.association, r.designations_file),
                },
            };
            let days = if row.credited_days.is_empty() || row.credited_days == row.charge_days {
                String::new()
            } else {
                format!(
                    ", prorated {} of {} days (the line's days in {})",
                    row.credited_days, row.charge_days, row.accrual_month
                )
            };
            let _ = writeln!(
                s,
                "  {}:{}  charge {}  accrual month {}  subscription {}  {designation}\n      {} x rate {} x share {} = {}{days}",
                row.source_file,
                row.source_line,
                row.charge_date,
                row.accrual_month,
                row.subscription_id,
                format_exact(row.basis, row.currency),
                row.rate,
                row.share,
                format_exact(row.amount, row.currency),
            );
            sum += row.amount;
        }
        let rounded = round_money(sum, *currency, r.rounding);
        *totals.entry(*currency).or_default() += rounded;
        let says = check(statement_says(customer, program, month, *currency), rounded);
        let _ = writeln!(
            s,
            "  sum of {} exact amounts {} -> rounded {} {} = {rounded} ({says})",
            rows.len(),
            format_exact(sum, *currency),
            r.rounding.as_str(),
            currency
        );
        months = (months.0 + 1, months.1 + rounded);
        let last = keys
            .get(gi + 1)
            .is_none_or(|n| (n.0, n.1, n.2) != (*customer, *program, *currency));
        if last {
            if months.0 > 1 {
                let says = check(
                    statement_says(customer, program, "total", *currency),
                    months.1,
                );
                let _ = writeln!(
                    s,
                    "\ncustomer {customer}, program {program}, {currency}: total of {} months = {} ({says})",
                    months.0, months.1
                );
            }
            months = (0, Decimal::ZERO);
        }
    }
    for (c, t) in totals {
        let _ = writeln!(s, "\ntotal {c}: {t} (the sum of the rounded lines above)");
    }
    s
}
