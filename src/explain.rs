//! `porledger explain`: how each amount of a finished run came about, from the
//! run's own outputs (ledger.csv, summary.json, manifest.json and the statement),
//! so that a finance reviewer can check a statement line by hand.
//!
//! The command (`cmd::explain`) reads the run's files into a [`RunRecord`];
//! [`render_explanation`] is pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rust_decimal::Decimal;

use crate::console::Lines;
use crate::money::{format_exact, round_money, Currency, ExactArith, RoundingMode};

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
    /// The issued version this run restates (its manifest's
    /// `history.restates`), if it restates one.
    pub restates: Option<u32>,
    /// (usage file, line, workload) -> how `attainment.csv` counted that
    /// usage record's units of the workload, for the usage rows of the
    /// ledger.
    pub usage: BTreeMap<UsageKey, UsageFacts>,
    /// What the filter's parts matched, to say which matched nothing.
    pub matched: Matched,
}

/// How many ledger lines each part of the [`Filter`] let through, in turn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    /// Lines of the partner.
    pub partner: u64,
    /// Of those, lines of the customer (all of them without `--customer`).
    pub customer: u64,
    /// The program IDs of those lines (which `--program` may name).
    pub programs: std::collections::BTreeSet<String>,
}

/// Why no ledger line passed `filter`: the first of its parts (partner,
/// customer, program) that matched nothing, named with its value; for the
/// program, the partner's program IDs it could have named (compared exactly,
/// as the rules spell them, like every program ID).
pub fn no_match_text(filter: &Filter, m: &Matched) -> String {
    if m.partner == 0 {
        return "no ledger line matches: this partner earned nothing here in the period".into();
    }
    let lines = |n: u64| format!("{n} ledger line{}", if n == 1 { "" } else { "s" });
    match (&filter.customer, &filter.program) {
        (Some(c), _) if m.customer == 0 => format!(
            "no ledger line matches --customer {c}: the partner has {} in the period, none of \
             this customer",
            lines(m.partner)
        ),
        (customer, Some(p)) => {
            let of = match customer {
                Some(c) => format!("of customer {c}"),
                None => "in the period".to_string(),
            };
            let ids: Vec<&str> = m.programs.iter().map(String::as_str).collect();
            format!(
                "no ledger line matches --program {p}: the partner has {} {of}, of program{} \
                 {} (program IDs are compared exactly, as the rules spell them)",
                lines(m.customer),
                if ids.len() == 1 { "" } else { "s" },
                ids.join(", ")
            )
        }
        _ => "no ledger line matches".into(),
    }
}

/// Which `attainment.csv` row explains a usage accrual: the usage file and
/// line it was counted from and its workload (the ledger's
/// `subscription_id` of a usage accrual; folded by `id_key`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UsageKey {
    pub source_file: String,
    pub source_line: String,
    pub workload: String,
}

impl UsageKey {
    pub fn of(row: &LedgerRow) -> UsageKey {
        UsageKey {
            source_file: row.source_file.clone(),
            source_line: row.source_line.clone(),
            workload: crate::ingest::id_key(&row.subscription_id),
        }
    }
}

/// One row of `attainment.csv`, as `explain` shows it beside the usage
/// ledger rows it paid (texts as written there).
#[derive(Clone, Debug, Default)]
pub struct UsageFacts {
    pub workload: String,
    pub month: String,
    pub mau: String,
    pub pau: String,
    pub pau_source: String,
    pub attainment: String,
    pub target_reached: String,
    pub prior_hwm: String,
    pub compensable_units: String,
}

/// The explanation as text: every ledger line, grouped by statement line, with
/// the sum of exact amounts and the rounding step.
pub fn render_explanation(r: &RunRecord, filter: &Filter) -> String {
    // A line at a time: names and IDs from the run never break a line.
    let mut s = Lines::new();
    writeln!(
        s,
        "Partner {} ({}), period {}, rounding {} to the currency's minor unit",
        filter.partner,
        if r.partner_name.is_empty() {
            "no name on record"
        } else {
            &r.partner_name
        },
        r.period,
        r.rounding.as_str()
    );
    if r.rows.is_empty() {
        writeln!(s);
        writeln!(s, "{}", no_match_text(filter, &r.matched));
        return s.into_string();
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
        writeln!(s);
        writeln!(
            s,
            "customer {customer}, program {program}, {currency}, accrual month {month}"
        );
        for t in r
            .tiers
            .get(&(customer.to_string(), program.to_string()))
            .into_iter()
            .flatten()
        {
            writeln!(s, "  attainment tier: {t}");
        }
        let mut sum = Decimal::ZERO;
        for row in rows {
            let designation = match row.designation_line.as_str() {
                // A credit of a closed charge: the partner, rate and share of
                // the issued accrual it reverses.
                "" if !row.reverses.is_empty() => format!(
                    "{} as issued: reverses the closed accrual {}",
                    row.association, row.reverses
                ),
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
            let usage = r.usage.get(&UsageKey::of(row));
            if let Some(u) = usage {
                let prior = if u.prior_hwm.is_empty() {
                    "no earlier high-water mark".to_string()
                } else {
                    format!("prior high-water mark {}", u.prior_hwm)
                };
                let target = if u.target_reached.is_empty() {
                    "no target reached".to_string()
                } else {
                    format!("target {} reached", u.target_reached)
                };
                writeln!(
                    s,
                    "  {}:{}  usage of {}  accrual month {}  workload {}  {designation}",
                    row.source_file, row.source_line, u.month, row.accrual_month, u.workload,
                );
                writeln!(
                    s,
                    "      {} monthly active users of {} paid units ({}): attainment {}, {target}; \
                     {prior}: {} compensable units",
                    u.mau,
                    u.pau,
                    u.pau_source,
                    u.attainment,
                    u.compensable_units,
                );
                writeln!(
                    s,
                    "      {} units x rate {} x share {} = {}",
                    row.basis.normalize(),
                    row.rate,
                    row.share,
                    format_exact(row.amount, row.currency),
                );
                sum += row.amount;
                continue;
            }
            let billed = billed(&row.invoice_number, &row.product_id, "  ");
            writeln!(
                s,
                "  {}:{}  charge {}  accrual month {}  subscription {}{billed}  {designation}",
                row.source_file,
                row.source_line,
                row.charge_date,
                row.accrual_month,
                row.subscription_id,
            );
            writeln!(
                s,
                "      {} x rate {} x share {} = {}{days}",
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
        writeln!(
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
                writeln!(s);
                writeln!(
                    s,
                    "customer {customer}, program {program}, {currency}: total of {} months = {} ({says})",
                    months.0, months.1
                );
            }
            months = (0, Decimal::ZERO);
        }
    }
    for (c, t) in totals {
        writeln!(s);
        writeln!(s, "total {c}: {t} (the sum of the rounded lines above)");
    }
    s.into_string()
}

/// `invoice X` and `product Y`, each after `sep`, where not empty: a ledger
/// line's billing keys (the tie-out's grain); usage rows and ledgers written
/// before these columns have neither.
pub fn billed(invoice: &str, product: &str, sep: &str) -> String {
    let mut s = String::new();
    for (what, v) in [("invoice", invoice), ("product", product)] {
        if !v.is_empty() {
            let _ = write!(s, "{sep}{what} {v}");
        }
    }
    s
}

/// One accrual of an issued version of a closed period (from the history), for
/// [`render_issued`].
#[derive(Clone, Debug, PartialEq)]
pub struct IssuedAccrual {
    pub customer_id: String,
    pub program_id: String,
    pub accrual_month: String,
    pub currency: Currency,
    pub association: String,
    pub subscription_id: String,
    pub source: String,
    pub basis: String,
    pub rate: String,
    pub share: String,
    pub amount: Decimal,
    pub designation_line: Option<u64>,
}

/// Group key: customer, program, accrual month, currency.
type LineKey = (String, String, String, Currency);

/// Per line: the issued exact sum, this run's, and the issued rows.
type Compared<'a> = (Option<Decimal>, Option<Decimal>, Vec<&'a IssuedAccrual>);

/// `explain --history`: this run's exact sums next to those of the issued
/// `version` of `period`, per customer, program, accrual month and currency;
/// for a line whose exact sum differs, the issued computation row by row (the
/// current one is above, in [`render_explanation`]).
pub fn render_issued(
    period: &str,
    version: u32,
    issued: &[IssuedAccrual],
    now: &[LedgerRow],
) -> String {
    let mut lines: BTreeMap<LineKey, Compared<'_>> = BTreeMap::new();
    let add = |a: Option<Decimal>, b: Decimal| match a {
        None => Some(Some(b)),
        Some(x) => x.exact_add(b).map(Some),
    };
    let mut overflow = false;
    for a in issued {
        let key = (
            a.customer_id.clone(),
            a.program_id.clone(),
            a.accrual_month.clone(),
            a.currency,
        );
        let e = lines.entry(key).or_default();
        match add(e.0, a.amount) {
            Some(v) => e.0 = v,
            None => overflow = true,
        }
        e.2.push(a);
    }
    for r in now {
        let key = (
            r.customer_id.clone(),
            r.program_id.clone(),
            r.accrual_month.clone(),
            r.currency,
        );
        let e = lines.entry(key).or_default();
        match add(e.1, r.amount) {
            Some(v) => e.1 = v,
            None => overflow = true,
        }
    }
    // A line at a time: IDs from the history never break a line.
    let mut s = Lines::new();
    writeln!(s);
    writeln!(
        s,
        "Issued: version {version} of period {period} (from the history), against this run, \
         exact sums per customer, program, accrual month and currency:"
    );
    if lines.is_empty() {
        writeln!(s, "  nothing issued and nothing accrued for this selection");
    }
    let mut differ = 0;
    for ((customer, program, month, currency), (was, now, rows)) in &lines {
        let show = |v: &Option<Decimal>| {
            v.map(|d| format_exact(d, *currency))
                .unwrap_or_else(|| "-".to_string())
        };
        let same = was.unwrap_or_default() == now.unwrap_or_default();
        writeln!(
            s,
            "  customer {customer}  program {program}  {month}  {currency}: issued {}  now {}  {}",
            show(was),
            show(now),
            if same { "same" } else { "DIFFERS" }
        );
        if same {
            continue;
        }
        differ += 1;
        if rows.is_empty() {
            writeln!(s, "    nothing was issued for this line");
        }
        for a in rows {
            writeln!(
                s,
                "    issued: {}  {}  subscription {}  {} x rate {} x share {} = {}{}",
                a.source,
                a.association,
                a.subscription_id,
                a.basis,
                a.rate,
                a.share,
                format_exact(a.amount, a.currency),
                a.designation_line
                    .map(|l| format!("  (designation line {l})"))
                    .unwrap_or_default()
            );
        }
    }
    writeln!(
        s,
        "  {differ} of {} lines differ from the issued version{}",
        lines.len(),
        if overflow {
            "; a sum was too large for a decimal and is left out"
        } else {
            ""
        }
    );
    s.into_string()
}

#[cfg(test)]
mod issued_tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    /// An empty explanation names the filter that matched nothing, not the
    /// partner, and for `--program` the program IDs there are.
    #[test]
    fn no_match_names_the_filter_that_matched_nothing() {
        let filter = |customer: Option<&str>, program: Option<&str>| Filter {
            partner: "P-A".into(),
            customer: customer.map(str::to_string),
            program: program.map(str::to_string),
        };
        let m = Matched {
            partner: 3,
            customer: 0,
            programs: Default::default(),
        };
        let t = no_match_text(&filter(Some("nonexist"), None), &m);
        assert!(t.contains("--customer nonexist"), "{t}");
        assert!(t.contains("3 ledger lines"), "{t}");
        assert!(!t.contains("earned nothing"), "{t}");
        let m = Matched {
            partner: 3,
            customer: 2,
            programs: ["core".to_string(), "usage".to_string()].into(),
        };
        let t = no_match_text(&filter(Some("C1"), Some("CORE")), &m);
        assert!(t.contains("--program CORE"), "{t}");
        assert!(
            t.contains("2 ledger lines of customer C1, of programs core, usage"),
            "{t}"
        );
        let t = no_match_text(&filter(None, Some("x")), &m);
        assert!(t.contains("2 ledger lines in the period"), "{t}");
        let none = Matched::default();
        let t = no_match_text(&filter(Some("C1"), Some("x")), &none);
        assert!(t.contains("this partner earned nothing"), "{t}");
    }

    #[test]
    fn issued_and_current_sums_per_line_with_the_issued_rows_of_a_changed_line() {
        let eur = Currency::parse("EUR").unwrap();
        let issued = vec![IssuedAccrual {
            customer_id: "c1".into(),
            program_id: "por".into(),
            accrual_month: "2026-10".into(),
            currency: eur,
            association: "DPOR".into(),
            subscription_id: "s1".into(),
            source: "b.csv:2".into(),
            basis: "1000.00".into(),
            rate: "0.04".into(),
            share: "1.0".into(),
            amount: d("40.00"),
            designation_line: Some(2),
        }];
        let text = render_issued("2026-10", 1, &issued, &[]);
        assert!(
            text.contains("customer c1  program por  2026-10  EUR: issued 40.00  now -  DIFFERS"),
            "{text}"
        );
        assert!(
            text.contains("issued: b.csv:2  DPOR  subscription s1  1000.00 x rate 0.04 x share 1.0 = 40.00  (designation line 2)"),
            "{text}"
        );
        assert!(text.contains("1 of 1 lines differ"), "{text}");
        let same = render_issued("2026-10", 1, &[], &[]);
        assert!(
            same.contains("nothing issued and nothing accrued"),
            "{same}"
        );
    }
}
