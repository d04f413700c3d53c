//! Adjustment statements of a restatement (`run --history` on a closed
//! period): `partners/<id>/adjustment.csv` (every line of the partner whose
//! amount differs from the issued version) and
//! `partners/<id>/adjustments/<customer_id>.csv` (the same, per customer),
//! and unless `--no-pdf` the same as PDF (`adjustment.pdf`,
//! `adjustments/<customer_id>.pdf`).

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;

use super::csv::{row, writer};
use super::publish::{write_file, Written};
use super::sanitize_file_name;
use crate::error::Fatal;
use crate::history::adjust::{AdjustmentLine, Adjustments};
use crate::render::pdf::Renderer;
use crate::statements::StatementSet;

/// The header of an adjustment statement.
pub const ADJUSTMENT_HEADER: [&str; 11] = [
    "partner_id",
    "customer_id",
    "customer_name",
    "program_id",
    "accrual_month",
    "currency",
    "issued_version",
    "issued_amount",
    "now_amount",
    "difference",
    "reason",
];

fn csv_bytes(version: u32, lines: &[&AdjustmentLine]) -> Result<Vec<u8>, csv::Error> {
    let mut w = writer(Vec::new());
    row(&mut w, &ADJUSTMENT_HEADER)?;
    let v = version.to_string();
    for l in lines {
        // Each amount with its currency's decimals, a zero (a line issued
        // or now without the other) as `0.00` like every amount.
        let units = crate::money::Currency::parse(&l.key.currency).map(|c| c.minor_units());
        let amount = |a: rust_decimal::Decimal| match units {
            Some(u) => crate::money::Exact(a, u).to_string(),
            None => a.to_string(),
        };
        let (i, n, d) = (amount(l.issued), amount(l.now), amount(l.difference));
        row(
            &mut w,
            &[
                &l.key.partner_id,
                &l.key.customer_id,
                &l.customer_name,
                &l.key.program_id,
                &l.key.accrual_month,
                &l.key.currency,
                &v,
                &i,
                &n,
                &d,
                &l.reason,
            ],
        )?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// The lines of `a` by partner, in key order.
fn by_partner(a: &Adjustments) -> BTreeMap<&str, Vec<&AdjustmentLine>> {
    let mut m: BTreeMap<&str, Vec<&AdjustmentLine>> = BTreeMap::new();
    for l in &a.lines {
        m.entry(&l.key.partner_id).or_default().push(l);
    }
    m
}

/// Whether `rel` (a path relative to the output directory, `/`-separated)
/// is an adjustment PDF: `partners/<id>/adjustment.pdf` or
/// `partners/<id>/adjustments/<customer_id>.pdf`.
pub fn is_adjustment_pdf(rel: &str) -> bool {
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["partners", _, "adjustment.pdf"] => true,
        ["partners", _, "adjustments", f] => f.ends_with(".pdf"),
        _ => false,
    }
}

/// Writes the adjustment statements of `a` as PDF into `dir` (in parallel on
/// the current rayon pool): one per partner with adjustments and one per
/// customer of it; returns how many.
pub fn write_adjustment_pdfs(
    dir: &Path,
    a: &Adjustments,
    set: &StatementSet,
    r: &Renderer,
    files: &Written,
) -> Result<usize, Fatal> {
    let partners: Vec<(&str, Vec<&AdjustmentLine>)> = by_partner(a).into_iter().collect();
    let counts = partners
        .par_iter()
        .map(|(partner, lines)| -> Result<usize, Fatal> {
            let pdir = dir.join("partners").join(sanitize_file_name(partner));
            let cdir = pdir.join("adjustments");
            std::fs::create_dir_all(&cdir).map_err(|e| Fatal::io(&cdir, e))?;
            let bytes = r.adjustment_statement(set, a.version, lines, None);
            write_file(files, &pdir.join("adjustment.pdf"), &bytes)?;
            let mut by_customer: BTreeMap<&str, Vec<&AdjustmentLine>> = BTreeMap::new();
            for l in lines {
                by_customer.entry(&l.key.customer_id).or_default().push(l);
            }
            for (customer, lines) in &by_customer {
                let path = cdir.join(format!("{}.pdf", sanitize_file_name(customer)));
                let bytes = r.adjustment_statement(set, a.version, lines, Some(customer));
                write_file(files, &path, &bytes)?;
            }
            Ok(1 + by_customer.len())
        })
        .collect::<Result<Vec<usize>, Fatal>>()?;
    Ok(counts.into_iter().sum())
}

/// Writes the adjustment statements of `a` into `dir`.
pub fn write_adjustments(dir: &Path, a: &Adjustments, files: &Written) -> Result<(), Fatal> {
    let err = |path: &Path| {
        let p = path.display().to_string();
        move |e: csv::Error| Fatal::Io {
            path: p.clone(),
            source: std::io::Error::other(e.to_string()),
        }
    };
    for (partner, lines) in by_partner(a) {
        let pdir = dir.join("partners").join(sanitize_file_name(partner));
        let cdir = pdir.join("adjustments");
        std::fs::create_dir_all(&cdir).map_err(|e| Fatal::io(&cdir, e))?;
        let path = pdir.join("adjustment.csv");
        let bytes = csv_bytes(a.version, &lines).map_err(err(&path))?;
        write_file(files, &path, &bytes)?;
        let mut by_customer: BTreeMap<&str, Vec<&AdjustmentLine>> = BTreeMap::new();
        for l in lines {
            by_customer.entry(&l.key.customer_id).or_default().push(l);
        }
        for (customer, lines) in by_customer {
            let path = cdir.join(format!("{}.csv", sanitize_file_name(customer)));
            let bytes = csv_bytes(a.version, &lines).map_err(err(&path))?;
            write_file(files, &path, &bytes)?;
        }
    }
    Ok(())
}
