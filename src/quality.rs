//! Data-quality checks on the designations that no single row shows: shares of
//! one association summing above 1, more than one DPOR partner on a
//! subscription at the same time, and one partner holding an association
//! through two rows at once.

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

/// Checks all designations; rows must be valid individually already.
pub fn check_designations<'a>(
    rows: impl IntoIterator<Item = &'a Designation>,
    file: &str,
) -> Vec<Issue> {
    let mut by_group: BTreeMap<(&str, Association), Vec<&Designation>> = BTreeMap::new();
    for d in rows {
        by_group
            .entry((&d.customer_id, d.association))
            .or_default()
            .push(d);
    }
    let mut issues = Vec::new();
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
                if a.partner_id == b.partner_id && overlaps(a, b) && same_scope(a, b) {
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
                    if a.partner_id != b.partner_id && overlaps(a, b) && same_scope(a, b) {
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
