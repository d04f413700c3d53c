//! Data-quality checks on the designations that no single row shows: shares of
//! one association summing above 1, more than one DPOR partner (or a POR and
//! a DPOR partner) on a subscription at the same time, one partner holding an association
//! through two rows at once, and one partner ID spelled in two letter cases.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::config::Association;
use crate::ingest::designations::Designation;

/// A problem found across designation rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub file: String,
    pub lines: Vec<u64>,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.lines.iter().map(u64::to_string).collect();
        write!(
            f,
            "{} lines {}: {}",
            self.file,
            lines.join(" and "),
            self.message
        )
    }
}

fn overlaps(a: &Designation, b: &Designation) -> bool {
    let a_from = a.valid_from.unwrap_or(NaiveDate::MIN);
    let b_from = b.valid_from.unwrap_or(NaiveDate::MIN);
    let a_to = a.valid_to.unwrap_or(NaiveDate::MAX);
    let b_to = b.valid_to.unwrap_or(NaiveDate::MAX);
    a_from < b_to && b_from < a_to
}

/// Whether two rows credit the same lines: the same workload, and the same
/// subscription or both customer-wide. (Where a subscription's own row
/// applies, the customer-wide rows of its association do not: see
/// `crate::attribute`.)
fn same_scope(a: &Designation, b: &Designation) -> bool {
    a.workload == b.workload && a.subscription_id == b.subscription_id
}

/// Partner IDs that are one ID (equal under [`crate::ingest::id_key`]) but
/// spelled differently on different rows (`P-A` and `p-a`): one issue per
/// partner, naming the first row of each spelling, in file order. `run`
/// refuses these before any work (the partner's statements would be written
/// under two file names that differ only in letter case, one file on a
/// case-insensitive file system); `validate` lists them with the other
/// problems of [`check_designations`].
pub fn partner_spellings<'a>(
    rows: impl IntoIterator<Item = &'a Designation>,
    file: &str,
) -> Vec<Issue> {
    // Per partner (in the order first seen): each spelling with its first
    // line and how many rows spell it so.
    let mut order: Vec<String> = Vec::new();
    let mut by_key: BTreeMap<String, Vec<(&str, u64, u64)>> = BTreeMap::new();
    for d in rows {
        let key = crate::ingest::id_key(&d.partner_id);
        let spellings = by_key.entry(key).or_insert_with_key(|k| {
            order.push(k.clone());
            Vec::new()
        });
        match spellings.iter_mut().find(|s| s.0 == d.partner_id) {
            Some(s) => s.2 += 1,
            None => spellings.push((&d.partner_id, d.line, 1)),
        }
    }
    let mut issues = Vec::new();
    for key in order {
        let spellings = &by_key[&key];
        if spellings.len() < 2 {
            continue;
        }
        let listed: Vec<String> = spellings
            .iter()
            .map(|&(id, line, n)| {
                let id = crate::console::spelled(id);
                match n {
                    1 => format!("{id} (line {line})"),
                    2 => format!("{id} (line {line} and 1 more row)"),
                    n => format!("{id} (line {line} and {} more rows)", n - 1),
                }
            })
            .collect();
        let (last, rest) = listed.split_last().unwrap_or((&listed[0], &[]));
        issues.push(Issue {
            file: file.into(),
            lines: spellings.iter().map(|s| s.1).collect(),
            message: format!(
                "the partner IDs {} and {last} differ only in letter case: IDs are \
                 case-insensitive, so they are one partner, whose statements cannot be \
                 written under two spellings (on a case-insensitive file system their file \
                 names are one file); spell this partner ID the same way on every row",
                rest.join(", ")
            ),
        });
    }
    issues
}

/// Checks all designations; rows must be valid individually already.
pub fn check_designations<'a>(
    rows: impl IntoIterator<Item = &'a Designation> + Clone,
    file: &str,
) -> Vec<Issue> {
    let mut issues = partner_spellings(rows.clone(), file);
    let mut by_group: BTreeMap<(&str, Association), Vec<&Designation>> = BTreeMap::new();
    for d in rows {
        by_group
            .entry((&d.customer_id, d.association))
            .or_default()
            .push(d);
    }
    // POR and DPOR are one role, the partner of record: a POR row and a
    // DPOR row of two partners for the same scope at once are two partners
    // of record.
    for ((customer, assoc), pors) in &by_group {
        if *assoc != Association::Por {
            continue;
        }
        let Some(dpors) = by_group.get(&(*customer, Association::Dpor)) else {
            continue;
        };
        for a in pors {
            for b in dpors {
                if !same_partner(a, b) && overlaps(a, b) && same_scope(a, b) {
                    issues.push(Issue {
                        file: file.into(),
                        lines: vec![a.line.min(b.line), a.line.max(b.line)],
                        message: format!(
                            "a POR partner ({}) and a DPOR partner ({}) for the same subscription{} of customer {customer} at the same time; \
                             POR and DPOR are one role, the partner of record, which Microsoft allows one partner at a time \
                             (a program paying both follows the rules' `conflicts` policy)",
                            a.partner_id,
                            b.partner_id,
                            if a.workload.is_empty() { String::new() } else { format!(" and workload {}", a.workload) }
                        ),
                    });
                }
            }
        }
    }
    for ((customer, assoc), ds) in by_group {
        // Shares: at the start of each row, the explicit shares active in its scope.
        let mut reported: Vec<Vec<u64>> = Vec::new();
        for d in &ds {
            let at = d.valid_from.unwrap_or(NaiveDate::MIN);
            let active: Vec<&&Designation> = ds
                .iter()
                .filter(|o| o.valid_on(at) || (o.valid_from.is_none() && d.valid_from.is_none()))
                .filter(|o| same_scope(d, o))
                .collect();
            let sum: Decimal = active.iter().filter_map(|o| o.share).sum();
            if sum > Decimal::ONE {
                let mut lines: Vec<u64> = active
                    .iter()
                    .filter(|o| o.share.is_some())
                    .map(|o| o.line)
                    .collect();
                lines.sort();
                if !reported.contains(&lines) {
                    issues.push(Issue {
                        file: file.into(),
                        lines: lines.clone(),
                        message: format!(
                            "{assoc} shares for customer {customer} sum to {} on {}: at most 1 is allowed",
                            sum.normalize(),
                            if at == NaiveDate::MIN { "every date".to_string() } else { at.to_string() }
                        ),
                    });
                    reported.push(lines);
                }
            }
        }
        for (i, a) in ds.iter().enumerate() {
            for b in &ds[i + 1..] {
                if same_partner(a, b) && overlaps(a, b) && same_scope(a, b) {
                    let how = if a.share == b.share {
                        "it counts once".to_string()
                    } else {
                        let s = |d: &Designation| {
                            d.share
                                .map_or("none".to_string(), |s| s.normalize().to_string())
                        };
                        format!(
                            "with different shares ({} and {}), the lines they cover are rejected",
                            s(a),
                            s(b)
                        )
                    };
                    issues.push(Issue {
                        file: file.into(),
                        lines: vec![a.line, b.line],
                        message: format!(
                            "partner {} holds {assoc} for customer {customer} through both rows at \
                             the same time: {how}",
                            a.partner_id
                        ),
                    });
                }
            }
        }
        if crate::attribute::is_exclusive(assoc) {
            for (i, a) in ds.iter().enumerate() {
                for b in &ds[i + 1..] {
                    if !same_partner(a, b) && overlaps(a, b) && same_scope(a, b) {
                        issues.push(Issue {
                            file: file.into(),
                            lines: vec![a.line, b.line],
                            message: format!(
                                "two {assoc} partners ({} and {}) for the same subscription{} of customer {customer} at the same time; \
                                 Microsoft allows one at a time (the rules' `conflicts` policy decides)",
                                a.partner_id,
                                b.partner_id,
                                if a.workload.is_empty() { String::new() } else { format!(" and workload {}", a.workload) }
                            ),
                        });
                    }
                }
            }
        }
    }
    issues
}

/// Whether two rows name one partner: IDs are case-insensitive, so `P-A`
/// and `p-a` are one partner (whose two spellings are an issue of their
/// own, [`partner_spellings`]), never two DPOR partners of one customer.
fn same_partner(a: &Designation, b: &Designation) -> bool {
    a.partner_id == b.partner_id
        || crate::ingest::id_key(&a.partner_id) == crate::ingest::id_key(&b.partner_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(
        line: u64,
        partner: &str,
        a: Association,
        share: Option<&str>,
        from: Option<(i32, u32, u32)>,
    ) -> Designation {
        Designation {
            line,
            customer_id: "c".into(),
            partner_id: partner.into(),
            partner_name: String::new(),
            association: a,
            workload: String::new(),
            subscription_id: None,
            share: share.map(|s| s.parse().unwrap()),
            valid_from: from.and_then(|(y, m, dd)| NaiveDate::from_ymd_opt(y, m, dd)),
            valid_to: None,
        }
    }

    #[test]
    fn finds_share_sums_and_double_dpor() {
        let rows = vec![
            d(2, "a", Association::Pal, Some("0.6"), Some((2024, 1, 1))),
            d(3, "b", Association::Pal, Some("0.5"), Some((2024, 6, 1))),
            d(4, "x", Association::Dpor, None, None),
            d(5, "y", Association::Dpor, None, Some((2025, 1, 1))),
        ];
        let issues = check_designations(&rows, "d.csv");
        assert_eq!(issues.len(), 2, "{issues:?}");
        let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        assert!(
            text.iter().any(|t| t.contains(
                "d.csv lines 2 and 3: PAL shares for customer c sum to 1.1 on 2024-06-01"
            )),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("d.csv lines 4 and 5: two DPOR partners (x and y)")),
            "{text:?}"
        );
    }

    #[test]
    fn one_partner_twice_at_once_is_named() {
        let rows = vec![
            d(2, "a", Association::Pal, None, None),
            d(3, "a", Association::Pal, None, None),
            d(4, "b", Association::Pal, None, None),
            d(5, "x", Association::Dpor, Some("0.5"), None),
            d(6, "x", Association::Dpor, None, Some((2025, 1, 1))),
        ];
        let text: Vec<String> = check_designations(&rows, "d.csv")
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(text.len(), 2, "{text:?}");
        let has = |want: &[&str]| text.iter().any(|t| want.iter().all(|w| t.contains(w)));
        assert!(
            has(&["lines 2 and 3: partner a holds PAL for customer c through both rows at the same time: it counts once"]),
            "{text:?}"
        );
        assert!(
            has(&[
                "lines 5 and 6: partner x holds DPOR",
                "different shares (0.5 and none)"
            ]),
            "{text:?}"
        );
    }

    #[test]
    fn one_partner_id_in_two_letter_cases_names_the_first_row_of_each_spelling() {
        let mut rows = vec![
            d(2, "P-A", Association::Dpor, None, None),
            d(3, "b", Association::Pal, None, None),
            d(4, "p-a", Association::Pal, None, None),
            d(5, "p-a", Association::Pal, None, None),
            d(6, "B", Association::Pal, None, None),
            d(7, "P-a", Association::Pal, None, None),
        ];
        for (i, r) in rows.iter_mut().enumerate() {
            r.customer_id = format!("c{i}");
        }
        let text: Vec<String> = partner_spellings(&rows, "d.csv")
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(
            text,
            vec![
                "d.csv lines 2 and 4 and 7: the partner IDs P-A (line 2), p-a (line 4 and 1 \
                 more row) and P-a (line 7) differ only in letter case: IDs are \
                 case-insensitive, so they are one partner, whose statements cannot be \
                 written under two spellings (on a case-insensitive file system their file \
                 names are one file); spell this partner ID the same way on every row",
                "d.csv lines 3 and 6: the partner IDs b (line 3) and B (line 6) differ only \
                 in letter case: IDs are case-insensitive, so they are one partner, whose \
                 statements cannot be written under two spellings (on a case-insensitive file \
                 system their file names are one file); spell this partner ID the same way on \
                 every row",
            ]
        );
        // validate lists them with the other designation problems.
        let all = check_designations(&rows, "d.csv");
        assert_eq!(all.len(), 2, "{all:?}");
        // One spelling throughout (and non-ASCII IDs lower-cased by Unicode's rules).
        let same = vec![
            d(2, "MÜLLER-01", Association::Pal, None, None),
            d(3, "MÜLLER-01", Association::Dpor, None, None),
        ];
        assert!(partner_spellings(&same, "d.csv").is_empty());
        let two = vec![
            d(2, "MÜLLER-01", Association::Pal, None, None),
            d(3, "müller-01", Association::Dpor, None, None),
        ];
        assert_eq!(partner_spellings(&two, "d.csv")[0].lines, vec![2, 3]);
    }

    /// `P-A` and `p-a` holding DPOR of one customer at once are one partner
    /// holding it through two rows (and a spelling issue), not two DPOR
    /// partners.
    #[test]
    fn two_spellings_of_one_partner_on_one_customer_are_one_partner() {
        let rows = vec![
            d(2, "P-A", Association::Dpor, None, None),
            d(3, "p-a", Association::Dpor, None, None),
        ];
        let text: Vec<String> = check_designations(&rows, "d.csv")
            .iter()
            .map(|i| i.to_string())
            .collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.contains("differ only in letter case")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("holds DPOR for customer c through both rows")),
            "{text:?}"
        );
        assert!(
            !text.iter().any(|t| t.contains("two DPOR partners")),
            "{text:?}"
        );
    }

    #[test]
    fn a_subscription_row_and_a_customer_wide_row_do_not_conflict() {
        let mut a = d(2, "a", Association::Dpor, None, None);
        a.subscription_id = Some("s5".into());
        let b = d(3, "b", Association::Dpor, None, None);
        assert!(check_designations(&[a, b], "d.csv").is_empty());
    }

    #[test]
    fn consecutive_rows_are_fine() {
        let mut a = d(2, "a", Association::Dpor, None, Some((2024, 1, 1)));
        a.valid_to = NaiveDate::from_ymd_opt(2025, 1, 1);
        let b = d(3, "b", Association::Dpor, None, Some((2025, 1, 1)));
        assert!(check_designations(&[a, b], "d.csv").is_empty());
    }
}
