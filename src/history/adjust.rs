//! Restatements: what changed between an issued version of a period and a
//! new run of it, per partner, customer, program, accrual month and
//! currency, with the reason traced to the inputs. Pure: takes what the
//! history returned and the new statements, reads and writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use super::{DesignationRec, FileRec, LineRec};
use crate::error::Fatal;
use crate::money::ExactArith;
use crate::statements::StatementSet;

/// The key of an adjustment line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LineKey {
    pub partner_id: String,
    pub customer_id: String,
    pub program_id: String,
    pub accrual_month: String,
    pub currency: String,
}

/// One line of an adjustment statement: issued, now, difference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentLine {
    pub key: LineKey,
    pub partner_name: String,
    pub customer_name: String,
    pub issued: Decimal,
    pub now: Decimal,
    pub difference: Decimal,
    /// Why, traced: the designation rows of this partner and customer that
    /// changed, then the input files that changed.
    pub reasons: Vec<Reason>,
    /// The reasons in English, joined by `; ` (the CSV's `reason` column).
    pub reason: String,
}

/// One traced reason of an adjustment line: a designation row or an input
/// file that changed between the issued version and this run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    /// A designation row shown on the issued statement no longer applies.
    DesignationGone {
        line: u64,
        association: String,
        /// `from` or `from..to` (ISO dates).
        valid: String,
    },
    /// A designation row applies now that the issued statement did not show.
    DesignationNew {
        line: u64,
        association: String,
        valid: String,
    },
    InputRemoved {
        role: String,
        path: String,
    },
    /// An input file's content changed (first 12 hex digits of the SHA-256s).
    InputChanged {
        role: String,
        path: String,
        from: String,
        to: String,
    },
    InputAdded {
        role: String,
        path: String,
    },
}

impl Reason {
    /// The reason in English, as the CSV writes it.
    pub fn english(&self) -> String {
        match self {
            Reason::DesignationGone {
                line,
                association,
                valid,
            } => format!("designation row {line} no longer applies ({association} {valid})"),
            Reason::DesignationNew {
                line,
                association,
                valid,
            } => format!("designation row {line} now applies ({association} {valid})"),
            Reason::InputRemoved { role, path } => format!("{role} file {path} removed"),
            Reason::InputChanged {
                role,
                path,
                from,
                to,
            } => format!("{role} file {path} changed (sha256 {from} -> {to})"),
            Reason::InputAdded { role, path } => format!("{role} file {path} added"),
        }
    }
}

/// The adjustments of a restatement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Adjustments {
    /// The issued version compared against.
    pub version: u32,
    /// Lines whose amount differs, by partner, customer, program, month,
    /// currency.
    pub lines: Vec<AdjustmentLine>,
    /// The input files that changed (role: what), for every line.
    pub inputs_changed: Vec<String>,
}

/// A line's amount as issued (its text in the history): a text that is not
/// a decimal is a damaged history, never read as 0.
fn parse(s: &str, l: &LineRec) -> Result<Decimal, Fatal> {
    s.parse().map_err(|_| {
        Fatal::Input(format!(
            "the history's issued line of partner {}, customer {}, program {}, {} {} has \
             the amount '{s}', not a decimal: the history is damaged",
            l.partner_id, l.customer_id, l.program_id, l.accrual_month, l.currency
        ))
    })
}

/// `a + b` (or `a - b`), checked: a line's amounts near the decimal range are
/// an error naming the line, never a panic.
fn checked(a: Option<Decimal>, k: &LineKey, what: &str) -> Result<Decimal, Fatal> {
    a.ok_or_else(|| Fatal::Overflow {
        what: format!(
            "the {what} of partner {}, customer {}, program {}, {} {}",
            k.partner_id, k.customer_id, k.program_id, k.accrual_month, k.currency
        ),
        cause: crate::money::INEXACT_SUM.into(),
    })
}

/// Compares the issued lines (`version`) with `now`. `issued_inputs` and
/// `now_inputs` are the manifests' input files; `issued_designations` and
/// `now_designations` the designation rows shown on the customer statements.
pub fn compare(
    version: u32,
    issued: &[LineRec],
    issued_inputs: &[FileRec],
    issued_designations: &[DesignationRec],
    now: &StatementSet,
    now_inputs: &[FileRec],
    now_designations: &[DesignationRec],
) -> Result<Adjustments, Fatal> {
    // One side of a line: the IDs as that side spells them, the names, the
    // amount.
    struct Side {
        key: LineKey,
        partner_name: String,
        customer_name: String,
        total: Decimal,
    }
    // Partner and customer IDs are case-insensitive: a line is found on both
    // sides by its IDs as `id_key` folds them, so a partner issued as `P-A`
    // and spelled `p-a` by the restatement's designations is one partner
    // whose line is compared, not a line taken back and another added.
    let fold = |k: &LineKey| {
        (
            crate::ingest::id_key(&k.partner_id),
            crate::ingest::id_key(&k.customer_id),
            k.program_id.clone(),
            k.accrual_month.clone(),
            k.currency.clone(),
        )
    };
    type Both = (Option<Side>, Option<Side>);
    let mut both: BTreeMap<(String, String, String, String, String), Both> = BTreeMap::new();
    for l in issued {
        let k = LineKey {
            partner_id: l.partner_id.clone(),
            customer_id: l.customer_id.clone(),
            program_id: l.program_id.clone(),
            accrual_month: l.accrual_month.clone(),
            currency: l.currency.clone(),
        };
        let amount = parse(&l.amount, l)?;
        let e = both.entry(fold(&k)).or_default();
        let prev = e.0.as_ref().map(|s| s.total).unwrap_or_default();
        let total = checked(prev.exact_add(amount), &k, "issued amount")?;
        e.0 = Some(Side {
            key: k,
            partner_name: l.partner_name.clone(),
            customer_name: l.customer_name.clone(),
            total,
        });
    }
    for p in &now.partners {
        for l in p.lines() {
            let k = LineKey {
                partner_id: p.partner_id.clone(),
                customer_id: l.customer_id.to_string(),
                program_id: l.program_id.to_string(),
                accrual_month: l.month.to_string(),
                currency: l.currency.as_str().to_string(),
            };
            let e = both.entry(fold(&k)).or_default();
            let prev = e.1.as_ref().map(|s| s.total).unwrap_or_default();
            let total = checked(prev.exact_add(l.amount), &k, "amount now")?;
            e.1 = Some(Side {
                key: k,
                partner_name: p.partner_name.clone(),
                customer_name: l.customer_name.to_string(),
                total,
            });
        }
    }
    let input_reasons = input_changes(issued_inputs, now_inputs);
    // The designation rows a statement shows are compared only when the
    // designations read changed: with the same file (by content), a row
    // missing from a statement is a customer without lines now (a billing
    // line gone), not a designation that no longer applies.
    fn designations(files: &[FileRec]) -> Vec<&str> {
        let mut shas: Vec<&str> = files
            .iter()
            .filter(|f| f.role == "designations")
            .map(|f| f.sha256.as_str())
            .collect();
        shas.sort_unstable();
        shas
    }
    let designations_changed = designations(issued_inputs) != designations(now_inputs);
    let by_customer = |rows: &[DesignationRec]| {
        let mut m: BTreeMap<(String, String), BTreeSet<DesignationRec>> = BTreeMap::new();
        for d in rows {
            let pc = (
                crate::ingest::id_key(&d.partner_id),
                crate::ingest::id_key(&d.customer_id),
            );
            // Compared as rows of one partner and customer: the IDs folded,
            // so that a respelling alone is no designation gone and new.
            let mut d = d.clone();
            (d.partner_id, d.customer_id) = pc.clone();
            d.subscription_id = crate::ingest::id_key(&d.subscription_id);
            m.entry(pc).or_default().insert(d);
        }
        m
    };
    let (di, dn) = (
        by_customer(issued_designations),
        by_customer(now_designations),
    );
    let empty = BTreeSet::new();
    let mut lines = Vec::new();
    for ((partner, customer, ..), (was, is)) in both {
        let issued_amount = was.as_ref().map(|s| s.total).unwrap_or_default();
        let now_amount = is.as_ref().map(|s| s.total).unwrap_or_default();
        if issued_amount == now_amount && was.is_some() == is.is_some() {
            continue;
        }
        // Shown as this run spells it, or as issued when the run has no
        // such line.
        let Some(shown) = is.as_ref().or(was.as_ref()) else {
            continue;
        };
        let key = shown.key.clone();
        let difference = checked(
            now_amount.exact_sub(issued_amount),
            &key,
            "restated difference",
        )?;
        let pc = (partner, customer);
        let (a, b) = (di.get(&pc).unwrap_or(&empty), dn.get(&pc).unwrap_or(&empty));
        let valid = |d: &DesignationRec| {
            if d.valid_to.is_empty() {
                d.valid_from.clone()
            } else {
                format!("{}..{}", d.valid_from, d.valid_to)
            }
        };
        let mut why = Vec::new();
        let (a, b) = if designations_changed {
            (a, b)
        } else {
            (&empty, &empty)
        };
        for d in a.difference(b) {
            why.push(Reason::DesignationGone {
                line: d.source_line,
                association: d.association.clone(),
                valid: valid(d),
            });
        }
        for d in b.difference(a) {
            why.push(Reason::DesignationNew {
                line: d.source_line,
                association: d.association.clone(),
                valid: valid(d),
            });
        }
        why.extend(input_reasons.iter().cloned());
        lines.push(AdjustmentLine {
            partner_name: shown.partner_name.clone(),
            customer_name: shown.customer_name.clone(),
            issued: issued_amount,
            now: now_amount,
            difference,
            reason: why
                .iter()
                .map(Reason::english)
                .collect::<Vec<_>>()
                .join("; "),
            reasons: why,
            key,
        });
    }
    // In the order of the lines' keys as shown, as before IDs were folded.
    lines.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Adjustments {
        version,
        lines,
        inputs_changed: input_reasons.iter().map(Reason::english).collect(),
    })
}

/// The input files that differ, by role and path.
fn input_changes(issued: &[FileRec], now: &[FileRec]) -> Vec<Reason> {
    let key = |f: &FileRec| (f.role.clone(), f.path.clone());
    let a: BTreeMap<_, _> = issued.iter().map(|f| (key(f), &f.sha256)).collect();
    let b: BTreeMap<_, _> = now.iter().map(|f| (key(f), &f.sha256)).collect();
    let mut out = Vec::new();
    for ((role, path), sha) in &a {
        let (role, path) = (role.clone(), path.clone());
        match b.get(&(role.clone(), path.clone())) {
            None => out.push(Reason::InputRemoved { role, path }),
            Some(s) if s != sha => out.push(Reason::InputChanged {
                role,
                path,
                from: short(sha).to_string(),
                to: short(s).to_string(),
            }),
            Some(_) => {}
        }
    }
    for (role, path) in b.keys() {
        if !a.contains_key(&(role.clone(), path.clone())) {
            out.push(Reason::InputAdded {
                role: role.clone(),
                path: path.clone(),
            });
        }
    }
    out
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// The designation rows shown on the customer statements of `set`.
pub fn designations_of(set: &StatementSet) -> Vec<DesignationRec> {
    let mut v = Vec::new();
    for p in &set.partners {
        for c in &p.customers {
            for d in &c.designations {
                v.push(DesignationRec {
                    partner_id: p.partner_id.clone(),
                    customer_id: c.customer_id.clone(),
                    association: d.association.as_str().to_string(),
                    subscription_id: d.subscription_id.clone().unwrap_or_default(),
                    workload: d.workload.clone(),
                    share: d.share.map(|s| s.to_string()).unwrap_or_default(),
                    valid_from: d.valid_from.map(|s| s.to_string()).unwrap_or_default(),
                    valid_to: d.valid_to.map(|s| s.to_string()).unwrap_or_default(),
                    source_line: d.source_line,
                });
            }
        }
    }
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: &str, c: &str, amount: &str) -> LineRec {
        LineRec {
            partner_id: p.into(),
            partner_name: p.into(),
            customer_id: c.into(),
            customer_name: c.into(),
            program_id: "prog".into(),
            accrual_month: String::new(),
            currency: "USD".into(),
            lines: 1,
            basis: "0".into(),
            amount: amount.into(),
        }
    }

    fn file(role: &str, sha: &str) -> FileRec {
        FileRec {
            path: format!("{role}.csv"),
            role: role.into(),
            sha256: sha.into(),
            bytes: 1,
        }
    }

    /// A period's statements with no line.
    fn no_statements() -> StatementSet {
        StatementSet {
            period: "2026-10".parse().unwrap(),
            rounding: crate::money::RoundingMode::HalfEven,
            partners: vec![],
            summary: vec![],
            programs: vec![],
        }
    }

    #[test]
    fn differences_per_line_with_the_reason() {
        let issued = vec![line("P1", "C1", "10.00"), line("P1", "C2", "5.00")];
        let now = no_statements();
        let a = compare(
            1,
            &issued,
            &[file("designations", "aaaaaaaaaaaaaaaa")],
            &[],
            &now,
            &[file("designations", "bbbbbbbbbbbbbbbb")],
            &[],
        )
        .unwrap();
        assert_eq!(a.lines.len(), 2);
        assert_eq!(a.lines[0].difference, Decimal::new(-1000, 2));
        assert_eq!(a.lines[1].issued, Decimal::new(500, 2));
        assert!(a.lines[0].reason.contains(
            "designations file designations.csv changed (sha256 aaaaaaaaaaaa -> bbbbbbbbbbbb)"
        ));
        assert_eq!(
            a.lines[0].reasons,
            vec![Reason::InputChanged {
                role: "designations".into(),
                path: "designations.csv".into(),
                from: "aaaaaaaaaaaa".into(),
                to: "bbbbbbbbbbbb".into(),
            }]
        );
        let same = compare(1, &[], &[], &[], &now, &[], &[]).unwrap();
        assert!(same.lines.is_empty());
    }

    /// A designation row the issued statement showed and the new run does
    /// not (the customer has no line now) is a reason only when the
    /// designations read changed: with the same file, the billing lines
    /// changed, and blaming an unchanged row would be false.
    #[test]
    fn a_designation_row_is_blamed_only_when_the_designations_changed() {
        let issued = vec![line("P1", "C1", "4.00")];
        let row = DesignationRec {
            partner_id: "P1".into(),
            customer_id: "C1".into(),
            association: "DPOR".into(),
            subscription_id: String::new(),
            workload: String::new(),
            share: String::new(),
            valid_from: "2024-01-01".into(),
            valid_to: String::new(),
            source_line: 2,
        };
        let now = no_statements();
        let with = |issued_sha: &str, now_sha: &str| {
            compare(
                1,
                &issued,
                &[file("designations", issued_sha), file("billing", "b1")],
                std::slice::from_ref(&row),
                &now,
                &[file("designations", now_sha), file("billing", "b2")],
                &[],
            )
            .unwrap()
        };
        let same = with("aaaa", "aaaa");
        assert_eq!(same.lines.len(), 1);
        assert!(
            !same.lines[0].reason.contains("designation row"),
            "{}",
            same.lines[0].reason
        );
        assert!(
            same.lines[0]
                .reason
                .contains("billing file billing.csv changed"),
            "{}",
            same.lines[0].reason
        );
        let changed = with("aaaa", "bbbb");
        assert!(
            changed.lines[0]
                .reason
                .starts_with("designation row 2 no longer applies (DPOR 2024-01-01)"),
            "{}",
            changed.lines[0].reason
        );
    }

    /// Issued amounts that are not decimals, or whose sum leaves the decimal
    /// range, are errors naming the line: never read as 0, never a panic.
    #[test]
    fn a_damaged_or_out_of_range_issued_amount_is_an_error() {
        let now = no_statements();
        let e = compare(1, &[line("P1", "C1", "ten")], &[], &[], &now, &[], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'ten'") && e.contains("P1") && e.contains("C1"),
            "{e}"
        );
        let max = Decimal::MAX.to_string();
        let two = [line("P1", "C1", &max), line("P1", "C1", &max)];
        let e = compare(1, &two, &[], &[], &now, &[], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("issued amount") && e.contains("does not fit a decimal exactly"),
            "{e}"
        );
        // The sum fits; nothing now, so the difference is -MAX: fine.
        let a = compare(1, &two[..1], &[], &[], &now, &[], &[]).unwrap();
        assert_eq!(a.lines[0].difference, -Decimal::MAX);
    }
}
