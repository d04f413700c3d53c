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
///
/// Rows are compared within one scope (customer, role, workload and
/// subscription) by a sweep over their start dates, never pair by pair:
/// a file of thousands of open-ended rows of one customer is checked in
/// O(n log n) time and O(n) memory. Of each kind of overlap (one partner
/// through two rows, two partners of an exclusive association, a POR and a
/// DPOR partner) a scope reports its first [`PAIRS_NAMED`] pairs and counts
/// the rest; explicit shares above 1 are reported at the first
/// [`PAIRS_NAMED`] start dates where the set of shares changed.
pub fn check_designations<'a>(
    rows: impl IntoIterator<Item = &'a Designation> + Clone,
    file: &str,
) -> Vec<Issue> {
    let mut issues = partner_spellings(rows.clone(), file);
    // Per scope: customer, association, workload, subscription (two rows
    // credit the same lines only in one scope; where a subscription's own
    // row applies, the customer-wide rows of its association do not: see
    // `crate::attribute`).
    type Scope<'a> = (&'a str, Association, &'a str, Option<&'a str>);
    let mut by_scope: BTreeMap<Scope<'a>, Vec<&'a Designation>> = BTreeMap::new();
    for d in rows {
        by_scope
            .entry((
                &d.customer_id,
                d.association,
                &d.workload,
                d.subscription_id.as_deref(),
            ))
            .or_default()
            .push(d);
    }
    for ds in by_scope.values_mut() {
        ds.sort_by_key(|d| (start(d), d.line));
    }
    let scope_text = |d: &Designation| {
        if d.workload.is_empty() {
            String::new()
        } else {
            format!(" and workload {}", d.workload)
        }
    };
    // POR and DPOR are one role, the partner of record: a POR row and a
    // DPOR row of two partners for the same scope at once are two partners
    // of record.
    for ((customer, assoc, workload, sub), pors) in &by_scope {
        if *assoc != Association::Por {
            continue;
        }
        let Some(dpors) = by_scope.get(&(*customer, Association::Dpor, *workload, *sub)) else {
            continue;
        };
        let mut both: Vec<&Designation> = pors.iter().chain(dpors).copied().collect();
        both.sort_by_key(|d| (start(d), d.line));
        let (pairs, total) = overlapping_pairs(&both, Pairs::PorWithDpor);
        report(&mut issues, file, &pairs, total, |a, b| {
            let (por, dpor) = if a.association == Association::Por {
                (a, b)
            } else {
                (b, a)
            };
            format!(
                "a POR partner ({}) and a DPOR partner ({}) for the same subscription{} of customer {customer} at the same time; \
                 POR and DPOR are one role, the partner of record, which Microsoft allows one partner at a time \
                 (a program paying both follows the rules' `conflicts` policy)",
                por.partner_id,
                dpor.partner_id,
                scope_text(por)
            )
        });
    }
    for ((customer, assoc, _, _), ds) in &by_scope {
        share_sums(&mut issues, file, ds, customer, *assoc);
        let (pairs, total) = overlapping_pairs(ds, Pairs::SamePartner);
        report(&mut issues, file, &pairs, total, |a, b| {
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
            format!(
                "partner {} holds {assoc} for customer {customer} through both rows at \
                 the same time: {how}",
                a.partner_id
            )
        });
        if crate::attribute::is_exclusive(*assoc) {
            let (pairs, total) = overlapping_pairs(ds, Pairs::OtherPartner);
            report(&mut issues, file, &pairs, total, |a, b| {
                format!(
                    "two {assoc} partners ({} and {}) for the same subscription{} of customer {customer} at the same time; \
                     Microsoft allows one at a time (the rules' `conflicts` policy decides)",
                    a.partner_id,
                    b.partner_id,
                    scope_text(a)
                )
            });
        }
    }
    issues
}

/// How many pairs of each kind, and share sums, a scope names; the rest
/// are counted in the last one named.
pub const PAIRS_NAMED: usize = 10;

/// A row's start, for sorting and sweeping: the earliest date when it has
/// none.
fn start(d: &Designation) -> NaiveDate {
    d.valid_from.unwrap_or(NaiveDate::MIN)
}

/// A row's end (exclusive): the latest date when it has none.
fn end(d: &Designation) -> NaiveDate {
    d.valid_to.unwrap_or(NaiveDate::MAX)
}

/// Which overlapping pairs [`overlapping_pairs`] finds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pairs {
    /// One partner through two rows.
    SamePartner,
    /// Two partners.
    OtherPartner,
    /// A POR row and a DPOR row of two partners.
    PorWithDpor,
}

/// The first [`PAIRS_NAMED`] pairs of overlapping rows of kind `which`
/// among `rows` (one scope, sorted by start, then line), each as (the row
/// starting first, the other), and how many there are in all. A sweep over
/// the starts: the rows still valid at a row's start are the ones it
/// overlaps (they started no later, and end after it starts), counted per
/// association and partner (an ID in any letter case is one partner: `P-A`
/// and `p-a`, whose two spellings are an issue of their own, are never two
/// DPOR partners), so counting all pairs is O(n log n); the named
/// ones are found by walking those rows, which stops once enough are named.
fn overlapping_pairs<'a>(
    rows: &[&'a Designation],
    which: Pairs,
) -> (Vec<(&'a Designation, &'a Designation)>, u64) {
    use std::cmp::Reverse;
    use std::collections::{BTreeSet, BinaryHeap, HashMap};
    let keys: Vec<String> = rows
        .iter()
        .map(|d| crate::ingest::id_key(&d.partner_id))
        .collect();
    let mut alive: BTreeSet<usize> = BTreeSet::new();
    let mut ends: BinaryHeap<Reverse<(NaiveDate, usize)>> = BinaryHeap::new();
    let mut by_partner: HashMap<(Association, &str), u64> = HashMap::new();
    let mut by_association: HashMap<Association, u64> = HashMap::new();
    let mut named = Vec::new();
    let mut total = 0u64;
    for (j, b) in rows.iter().enumerate() {
        while let Some(&Reverse((to, i))) = ends.peek() {
            if to > start(b) {
                break;
            }
            ends.pop();
            alive.remove(&i);
            *by_partner
                .entry((rows[i].association, keys[i].as_str()))
                .or_default() -= 1;
            *by_association.entry(rows[i].association).or_default() -= 1;
        }
        let other = match (which, b.association) {
            (Pairs::PorWithDpor, Association::Por) => Association::Dpor,
            (Pairs::PorWithDpor, _) => Association::Por,
            _ => b.association,
        };
        let same = by_partner
            .get(&(other, keys[j].as_str()))
            .copied()
            .unwrap_or(0);
        let n = match which {
            Pairs::SamePartner => same,
            _ => by_association.get(&other).copied().unwrap_or(0) - same,
        };
        total += n;
        if n > 0 && named.len() < PAIRS_NAMED {
            for &i in &alive {
                let a = rows[i];
                let same_partner = keys[i] == keys[j];
                let pair = a.association == other
                    && match which {
                        Pairs::SamePartner => same_partner,
                        _ => !same_partner,
                    };
                if pair {
                    named.push((a, *b));
                    if named.len() == PAIRS_NAMED {
                        break;
                    }
                }
            }
        }
        alive.insert(j);
        ends.push(Reverse((end(b), j)));
        *by_partner
            .entry((b.association, keys[j].as_str()))
            .or_default() += 1;
        *by_association.entry(b.association).or_default() += 1;
    }
    (named, total)
}

/// One issue per named pair (lines in order), the message from `message`
/// of the pair; the last one counts the pairs not named.
fn report(
    issues: &mut Vec<Issue>,
    file: &str,
    pairs: &[(&Designation, &Designation)],
    total: u64,
    message: impl Fn(&Designation, &Designation) -> String,
) {
    for (k, (a, b)) in pairs.iter().enumerate() {
        let mut message = message(a, b);
        let rest = total - pairs.len() as u64;
        if k + 1 == pairs.len() && rest > 0 {
            message.push_str(&format!(" (and {rest} more pairs of rows like these)"));
        }
        issues.push(Issue {
            file: file.into(),
            lines: vec![a.line.min(b.line), a.line.max(b.line)],
            message,
        });
    }
}

/// Explicit shares of one scope's rows (sorted by start, then line) that
/// add up to more than 1 at a row's start: a sweep with a running sum,
/// reported where the set of rows with shares changed, at the first
/// [`PAIRS_NAMED`] such dates (the last counting the rest).
fn share_sums(
    issues: &mut Vec<Issue>,
    file: &str,
    ds: &[&Designation],
    customer: &str,
    assoc: Association,
) {
    use std::cmp::Reverse;
    use std::collections::{BTreeSet, BinaryHeap};
    let mut alive: BTreeSet<(u64, usize)> = BTreeSet::new();
    let mut ends: BinaryHeap<Reverse<(NaiveDate, usize)>> = BinaryHeap::new();
    let mut sum = Decimal::ZERO;
    // Bumped when a row with a share comes or goes: an unchanged set is
    // not reported twice.
    let (mut version, mut reported) = (0u64, None);
    let mut named = 0usize;
    let mut more = 0u64;
    let mut j = 0;
    while j < ds.len() {
        let at = start(ds[j]);
        while j < ds.len() && start(ds[j]) == at {
            let d = ds[j];
            ends.push(Reverse((end(d), j)));
            if let Some(s) = d.share {
                alive.insert((d.line, j));
                sum += s;
                version += 1;
            }
            j += 1;
        }
        while let Some(&Reverse((to, i))) = ends.peek() {
            if to > at {
                break;
            }
            ends.pop();
            if let Some(s) = ds[i].share {
                alive.remove(&(ds[i].line, i));
                sum -= s;
                version += 1;
            }
        }
        if sum <= Decimal::ONE || reported == Some(version) {
            continue;
        }
        reported = Some(version);
        if named == PAIRS_NAMED {
            more += 1;
            continue;
        }
        named += 1;
        issues.push(Issue {
            file: file.into(),
            lines: alive.iter().map(|&(line, _)| line).collect(),
            message: format!(
                "{assoc} shares for customer {customer} sum to {} on {}: at most 1 is allowed",
                sum.normalize(),
                if at == NaiveDate::MIN {
                    "every date".to_string()
                } else {
                    at.to_string()
                }
            ),
        });
    }
    if more > 0 {
        if let Some(last) = issues.last_mut() {
            last.message.push_str(&format!(
                " (and on {more} more dates where the rows change)"
            ));
        }
    }
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

    /// The sweep counts exactly the pairs a comparison of every pair
    /// finds, of each kind, on rows with every kind of start and end
    /// (none, equal, touching, nested), and names the first ones.
    #[test]
    fn the_sweep_counts_every_overlapping_pair() {
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let day = |n: u64| NaiveDate::from_ymd_opt(2024, 1, 1).unwrap() + chrono::Days::new(n);
        for _ in 0..200 {
            let n = 1 + next(14) as usize;
            let mut rows: Vec<Designation> = (0..n)
                .map(|i| {
                    let partner = ["a", "A", "b", "c"][next(4) as usize];
                    let a = [Association::Por, Association::Dpor][next(2) as usize];
                    let mut r = d(i as u64 + 2, partner, a, None, None);
                    let from = next(6);
                    r.valid_from = (next(4) > 0).then(|| day(from));
                    r.valid_to = (next(3) > 0).then(|| day(from + 1 + next(5)));
                    r
                })
                .collect();
            rows.sort_by_key(|d| (start(d), d.line));
            let refs: Vec<&Designation> = rows.iter().collect();
            let overlap = |a: &Designation, b: &Designation| start(a) < end(b) && start(b) < end(a);
            let same = |a: &Designation, b: &Designation| {
                crate::ingest::id_key(&a.partner_id) == crate::ingest::id_key(&b.partner_id)
            };
            let brute = |keep: &dyn Fn(&Designation, &Designation) -> bool| {
                let mut n = 0u64;
                for (i, a) in rows.iter().enumerate() {
                    for b in &rows[i + 1..] {
                        n += u64::from(overlap(a, b) && keep(a, b));
                    }
                }
                n
            };
            for (which, keep) in [
                (
                    Pairs::SamePartner,
                    &(|a: &Designation, b: &Designation| {
                        same(a, b) && a.association == b.association
                    }) as &dyn Fn(&Designation, &Designation) -> bool,
                ),
                (Pairs::OtherPartner, &|a: &Designation, b: &Designation| {
                    !same(a, b) && a.association == b.association
                }),
                (Pairs::PorWithDpor, &|a: &Designation, b: &Designation| {
                    !same(a, b) && a.association != b.association
                }),
            ] {
                let (named, total) = overlapping_pairs(&refs, which);
                assert_eq!(total, brute(keep), "{rows:?}");
                assert_eq!(named.len() as u64, total.min(PAIRS_NAMED as u64));
                assert!(named.iter().all(|(a, b)| overlap(a, b) && keep(a, b)));
            }
        }
    }

    /// Thousands of open-ended rows of one customer (a designations export
    /// that appends a row at each re-confirmation) give a few issues that
    /// count the rest, not millions (a 4,000-row file took 5.3 GB).
    #[test]
    fn many_overlapping_rows_are_counted_not_listed() {
        let rows: Vec<Designation> = (0..4000u64)
            .map(|i| {
                let from = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + chrono::Days::new(i);
                let mut r = d(
                    i + 2,
                    &format!("p{}", i % 50),
                    Association::Dpor,
                    Some("0.5"),
                    None,
                );
                r.valid_from = Some(from);
                r
            })
            .collect();
        let issues = check_designations(&rows, "d.csv");
        assert_eq!(issues.len(), 3 * PAIRS_NAMED, "{issues:?}");
        let all = 4000 * 3999 / 2;
        let same = 50 * (80 * 79 / 2);
        let text: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
        let counted = |n: u64| {
            text.iter()
                .any(|t| t.ends_with(&format!("(and {n} more pairs of rows like these)")))
        };
        assert!(counted(same - PAIRS_NAMED as u64), "{text:?}");
        assert!(counted(all - same - PAIRS_NAMED as u64), "{text:?}");
        assert!(
            text.iter()
                .any(|t| t.contains("more dates where the rows change")),
            "{text:?}"
        );
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
