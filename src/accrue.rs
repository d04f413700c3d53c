//! Accrue: apply the rules to one attributed billing line.
//!
//! For each program in force on the charge date that covers the product, every
//! credit of the program's associations earns `basis x rate x share`, kept exact.
//! A line no program pays is *not eligible*, with the reason of the program that
//! came closest to paying it.

use std::fmt::Write as _;

use rust_decimal::Decimal;

use crate::attribute::{Credit, DesignationIndex};
use crate::dates::add_months;
use crate::ingest::designations::Designation;
use crate::ingest::BillingLine;
use crate::rules::{Association, Basis, Program, Rules};

/// One accrual: a partner's exact earning on one line under one program.
#[derive(Clone, Debug, PartialEq)]
pub struct Accrual<'a> {
    pub program: usize,
    pub partner_id: &'a str,
    pub association: Association,
    pub basis: Decimal,
    pub rate: Decimal,
    pub share: Decimal,
    pub amount: Decimal,
    pub designation: Option<&'a Designation>,
}

/// Why no program pays a line. Ordered from "furthest from paying" to
/// "closest": a program checks, in this order, that it is in force on the charge
/// date, that some partner holds credit, that the charge is inside the window,
/// and that the product is covered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// No program is in force on the charge date.
    RuleNotInForce = 0,
    /// No partner holds an association the programs pay.
    NoDesignation = 1,
    /// Designated, but the charge falls outside the program's window.
    OutsideWindow = 2,
    /// A partner would earn, but the publisher is not covered or a product
    /// qualifier (e.g. Trial) is excluded.
    ExcludedProduct = 3,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::RuleNotInForce,
        Reason::NoDesignation,
        Reason::OutsideWindow,
        Reason::ExcludedProduct,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::RuleNotInForce => "rule-not-in-force",
            Reason::ExcludedProduct => "excluded-product",
            Reason::NoDesignation => "no-designation",
            Reason::OutsideWindow => "outside-window",
        }
    }
}

/// What happened to one line.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// At least one accrual was appended.
    Accrued,
    NotEligible {
        reason: Reason,
        detail: String,
    },
    /// The line cannot be attributed (shares of one association above 1).
    Rejected {
        column: String,
        value: String,
        reason: String,
    },
}

/// Scratch space reused across lines (no allocation per line on the hot path).
#[derive(Default)]
pub struct Scratch<'a> {
    credits: Vec<Credit<'a>>,
    misses: Vec<(usize, Reason, Option<u64>)>,
}

impl Scratch<'_> {
    /// The same buffers, for borrowing from another record.
    pub fn recycle<'b>(self) -> Scratch<'b> {
        Scratch {
            credits: crate::pipeline::recycle(self.credits),
            misses: self.misses,
        }
    }
}

fn has_qualifier(qualifiers: &str, wanted: &str) -> bool {
    // `["AddOn","Trial"]`, or a bare `Trial`, or `AddOn;Trial`.
    qualifiers
        .split([',', ';', '[', ']', '|'])
        .map(|t| t.trim().trim_matches(['"', '\'']).trim())
        .any(|t| t.eq_ignore_ascii_case(wanted))
}

fn excluded(p: &Program, line: &BillingLine<'_>) -> bool {
    (!p.publishers.is_empty()
        && !p
            .publishers
            .iter()
            .any(|x| x.eq_ignore_ascii_case(line.publisher)))
        || p.exclude_qualifiers
            .iter()
            .any(|q| has_qualifier(line.qualifiers, q))
}

/// Applies every program to `line`, appending accruals to `out`.
pub fn accrue_line<'a>(
    rules: &'a Rules,
    index: &'a DesignationIndex,
    designations_file: &str,
    line: &BillingLine<'a>,
    customer_key: &str,
    scratch: &mut Scratch<'a>,
    out: &mut Vec<Accrual<'a>>,
) -> Outcome {
    accrue_line_with(
        rules,
        index,
        designations_file,
        None,
        line,
        customer_key,
        scratch,
        out,
    )
}

/// [`accrue_line`] with the usage attainment table, which decides the rate of
/// programs with `tiers` (see [`crate::attain::rate_for`]).
#[allow(clippy::too_many_arguments)]
pub fn accrue_line_with<'a>(
    rules: &'a Rules,
    index: &'a DesignationIndex,
    designations_file: &str,
    attainment: Option<&crate::attain::AttainmentTable>,
    line: &BillingLine<'a>,
    customer_key: &str,
    scratch: &mut Scratch<'a>,
    out: &mut Vec<Accrual<'a>>,
) -> Outcome {
    let date = line.charge_start;
    let start = out.len();
    scratch.misses.clear();
    for (pi, p) in rules.programs.iter().enumerate() {
        if p.basis == Basis::Usage {
            // Earns from --usage rows (usage_accrue.rs), never from billing lines.
            continue;
        }
        if !p.in_force(date) {
            scratch.misses.push((pi, Reason::RuleNotInForce, None));
            continue;
        }
        let rate = crate::attain::rate_for(p, pi, rules, line, customer_key, attainment);
        let is_excluded = excluded(p, line);
        let before = out.len();
        let mut window_miss = None;
        for &a in &p.associations {
            scratch.credits.clear();
            if let Err(c) = index.credits(line, customer_key, date, a, &mut scratch.credits) {
                out.truncate(start);
                let lines: Vec<String> = c.lines.iter().map(u64::to_string).collect();
                return Outcome::Rejected {
                    column: "share".into(),
                    value: c.sum.normalize().to_string(),
                    reason: format!(
                        "{} shares for this customer and subscription sum to {} (above 1) in {} lines {}",
                        c.association,
                        c.sum.normalize(),
                        designations_file,
                        lines.join(", ")
                    ),
                };
            }
            for c in scratch.credits.drain(..) {
                if let (Some(w), Some(from)) =
                    (p.window_months, c.designation.and_then(|d| d.valid_from))
                {
                    if date >= add_months(from, w) {
                        window_miss = c.designation.map(|d| d.line);
                        continue;
                    }
                }
                let basis = match p.basis {
                    Basis::BilledRevenue => line.subtotal,
                    Basis::Usage => continue,
                };
                out.push(Accrual {
                    program: pi,
                    partner_id: c.partner_id,
                    association: c.association,
                    basis,
                    rate,
                    share: c.share,
                    amount: basis * rate * c.share,
                    designation: c.designation,
                });
            }
        }
        if out.len() > before && is_excluded {
            out.truncate(before);
            scratch.misses.push((pi, Reason::ExcludedProduct, None));
        } else if out.len() == before {
            match window_miss {
                Some(l) => scratch.misses.push((pi, Reason::OutsideWindow, Some(l))),
                None => scratch.misses.push((pi, Reason::NoDesignation, None)),
            }
        }
    }
    if out.len() > start {
        return Outcome::Accrued;
    }
    let reason = scratch
        .misses
        .iter()
        .map(|m| m.1)
        .max()
        .unwrap_or(Reason::RuleNotInForce);
    let mut detail = String::new();
    for &(pi, r, dline) in &scratch.misses {
        let p = &rules.programs[pi];
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        let _ = write!(detail, "{}: ", p.id);
        match r {
            Reason::RuleNotInForce => {
                let _ = write!(detail, "rule not in force on {date}");
            }
            Reason::ExcludedProduct => {
                if !p.publishers.is_empty()
                    && !p
                        .publishers
                        .iter()
                        .any(|x| x.eq_ignore_ascii_case(line.publisher))
                {
                    let _ = write!(detail, "publisher '{}' not covered", line.publisher);
                } else {
                    let _ = write!(detail, "product qualifiers {} excluded", line.qualifiers);
                }
            }
            Reason::NoDesignation => {
                let assoc: Vec<&str> = p.associations.iter().map(|a| a.as_str()).collect();
                let _ = write!(detail, "no {} credit on {date}", assoc.join("/"));
            }
            Reason::OutsideWindow => {
                let _ = write!(
                    detail,
                    "outside the {}-month window of the designation ({} line {})",
                    p.window_months.unwrap_or(0),
                    designations_file,
                    dline.unwrap_or(0)
                );
            }
        }
    }
    Outcome::NotEligible { reason, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;
    use crate::rules::parse_rules;
    use chrono::NaiveDate;

    const RULES: &str = r#"
[[program]]
id = "por"
associations = ["DPOR"]
rate = "0.04"
window_months = 36
valid_from = "2019-07-01"
exclude_qualifiers = ["Trial"]
publishers = ["Microsoft Corporation"]
[[program]]
id = "resale"
associations = ["RESELLER"]
rate = "0.01"
"#;

    fn dsg(from: (i32, u32, u32)) -> Designation {
        Designation {
            line: 2,
            customer_id: "c1".into(),
            partner_id: "p1".into(),
            partner_name: String::new(),
            association: Association::Dpor,
            workload: String::new(),
            subscription_id: None,
            share: None,
            valid_from: NaiveDate::from_ymd_opt(from.0, from.1, from.2),
            valid_to: None,
        }
    }

    fn line(
        date: (i32, u32, u32),
        amount: &str,
        reseller: Option<&'static str>,
    ) -> BillingLine<'static> {
        BillingLine {
            customer_id: "C1",
            customer_name: "",
            subscription_id: "S1",
            charge_start: NaiveDate::from_ymd_opt(date.0, date.1, date.2).unwrap(),
            charge_end: None,
            subtotal: amount.parse().unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            mpn_id: None,
            reseller_mpn_id: reseller,
            publisher: "Microsoft Corporation",
            qualifiers: "",
            charge_type: "",
            product_id: "",
            product_name: "",
            reference_id: "",
        }
    }

    fn run(
        rules: &Rules,
        idx: &DesignationIndex,
        l: &BillingLine<'static>,
    ) -> (Outcome, Vec<String>) {
        let mut out = Vec::new();
        let mut s = Scratch::default();
        let o = accrue_line(rules, idx, "d.csv", l, "c1", &mut s, &mut out);
        (
            o,
            out.iter()
                .map(|a| {
                    format!(
                        "{}:{}:{}",
                        rules.programs[a.program].id, a.partner_id, a.amount
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn pays_each_program_and_reverses_credits() {
        let rules = parse_rules(RULES).unwrap();
        let idx = DesignationIndex::new(vec![dsg((2024, 1, 1))]);
        let (o, acc) = run(&rules, &idx, &line((2024, 2, 1), "2000.00", Some("r9")));
        assert_eq!(o, Outcome::Accrued);
        assert_eq!(acc, ["por:p1:80.0000", "resale:r9:20.0000"]);
        let (_, acc) = run(&rules, &idx, &line((2024, 2, 1), "-2000.00", None));
        assert_eq!(acc, ["por:p1:-80.0000"]);
    }

    #[test]
    fn window_is_exclusive_at_its_end() {
        let rules = parse_rules(RULES).unwrap();
        let idx = DesignationIndex::new(vec![dsg((2024, 1, 1))]);
        let (o, _) = run(&rules, &idx, &line((2026, 12, 31), "10", None));
        assert_eq!(o, Outcome::Accrued);
        let (o, _) = run(&rules, &idx, &line((2027, 1, 1), "10", None));
        match o {
            Outcome::NotEligible { reason, detail } => {
                assert_eq!(reason, Reason::OutsideWindow);
                assert!(detail.contains("36-month window"), "{detail}");
                assert!(detail.contains("resale: no RESELLER credit"), "{detail}");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn reasons() {
        let rules = parse_rules(RULES).unwrap();
        let idx = DesignationIndex::new(vec![dsg((2019, 1, 1))]);
        let mut l = line((2019, 6, 30), "10", None);
        assert!(matches!(
            run(&rules, &idx, &l).0,
            Outcome::NotEligible {
                reason: Reason::NoDesignation,
                ..
            }
        ));
        let rules2 = parse_rules(&RULES.replace(
            "[[program]]\nid = \"resale\"\nassociations = [\"RESELLER\"]\nrate = \"0.01\"\n",
            "",
        ))
        .unwrap();
        assert!(matches!(
            run(&rules2, &idx, &l).0,
            Outcome::NotEligible {
                reason: Reason::RuleNotInForce,
                ..
            }
        ));
        l.charge_start = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        l.qualifiers = "[\"AddOn\",\"Trial\"]";
        assert!(matches!(
            run(&rules2, &idx, &l).0,
            Outcome::NotEligible {
                reason: Reason::ExcludedProduct,
                ..
            }
        ));
        l.qualifiers = "[\"AddOn\",\"TrialPlus\"]";
        assert_eq!(run(&rules2, &idx, &l).0, Outcome::Accrued);
        l.publisher = "Contoso Apps Ltd";
        assert!(matches!(
            run(&rules2, &idx, &l).0,
            Outcome::NotEligible {
                reason: Reason::ExcludedProduct,
                ..
            }
        ));
    }
}
