//! `statements.json`: the whole statement set as compact JSON.
//!
//! The bytes are exactly `serde_json::to_writer(set)` plus a newline (a test
//! holds them to it), but the partners, which are nearly all of it (one entry
//! per statement line and per group: hundreds of megabytes in a large run),
//! are serialised a few at a time on the worker pool while the previous ones
//! are written and hashed. Only two batches are held at once.

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::error::Fatal;
use crate::render::publish::{HashingWriter, Written};
use crate::statements::{PartnerStatement, StatementSet};

/// Writes `set` to `path` as compact JSON with a trailing newline, on the
/// current rayon pool.
pub fn write_statements_json(
    files: &Written,
    path: &Path,
    set: &StatementSet,
) -> Result<(), Fatal> {
    let f = std::fs::File::create(path).map_err(|e| Fatal::io(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, HashingWriter::new(path, f, files));
    write_set(&mut w, set).map_err(|e| Fatal::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    w.into_inner()
        .map_err(|e| Fatal::io(path, e.into_error()))?
        .finish()
}

fn write_set(w: &mut (impl Write + Send), set: &StatementSet) -> std::io::Result<()> {
    // The fields in `StatementSet`'s order, as serde's derive writes them.
    w.write_all(b"{\"period\":")?;
    serde_json::to_writer(&mut *w, &set.period)?;
    w.write_all(b",\"rounding\":")?;
    serde_json::to_writer(&mut *w, &set.rounding)?;
    w.write_all(b",\"partners\":[")?;
    write_partners(w, &set.partners)?;
    w.write_all(b"],\"summary\":")?;
    serde_json::to_writer(&mut *w, &set.summary)?;
    w.write_all(b",\"programs\":")?;
    serde_json::to_writer(&mut *w, &set.programs)?;
    w.write_all(b"}\n")
}

/// The partners, comma-separated: each batch serialised in parallel while the
/// one before it is written. The batches' buffers are reused (two sets): a
/// fresh buffer of several megabytes per partner is fresh memory for the
/// kernel to fault in and zero, which cost as much as writing it.
fn write_partners(
    w: &mut (impl Write + Send),
    partners: &[PartnerStatement],
) -> std::io::Result<()> {
    let render =
        |ps: &[PartnerStatement], mut bufs: Vec<Vec<u8>>| -> serde_json::Result<Vec<Vec<u8>>> {
            bufs.resize_with(ps.len(), Vec::new);
            bufs.par_iter_mut()
                .zip(ps.par_iter())
                .try_for_each(|(b, p)| {
                    b.clear();
                    serde_json::to_writer(&mut *b, p)
                })?;
            Ok(bufs)
        };
    let batch = rayon::current_num_threads().max(1);
    let mut batches = partners.chunks(batch);
    let mut ready = match batches.next() {
        Some(ps) => render(ps, Vec::new())?,
        None => return Ok(()),
    };
    let mut spare = Vec::new();
    let mut first = true;
    loop {
        let next = batches.next();
        let (written, rendered) = rayon::join(
            || -> std::io::Result<()> {
                for j in &ready {
                    if !first {
                        w.write_all(b",")?;
                    }
                    first = false;
                    w.write_all(j)?;
                }
                Ok(())
            },
            || {
                next.map(|ps| render(ps, std::mem::take(&mut spare)))
                    .transpose()
            },
        );
        written?;
        match rendered? {
            Some(r) => spare = std::mem::replace(&mut ready, r),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accrue::Accrual;
    use crate::attribute::DesignationIndex;
    use crate::config::{parse_rules, Association};
    use crate::dates::{Month, Period};
    use crate::fold::Fold;
    use crate::money::Currency;
    use rust_decimal::Decimal;

    /// A set of `partners` partners, each with two customers in two months
    /// and two currencies.
    fn set(partners: usize) -> StatementSet {
        let rules = parse_rules(
            "rounding = \"half-up\"\n[[program]]\nid = \"p\"\nname = \"Program \\\"P\\\"\"\nassociations = [\"RESELLER\"]\nrate = \"0.01\"\n",
        )
        .unwrap();
        let ids: Vec<String> = (0..partners).map(|i| format!("r{i}")).collect();
        let mut fold = Fold::new(1);
        for (i, partner) in ids.iter().enumerate() {
            for (j, (customer, month, currency)) in [
                ("c1", 10, "EUR"),
                ("c1", 11, "EUR"),
                ("c2, Ltd.", 10, "USD"),
                ("c2, Ltd.", 10, "EUR"),
            ]
            .into_iter()
            .enumerate()
            {
                let amount = Decimal::new((i * 10 + j) as i64 + 5, 3);
                let a = Accrual {
                    program: 0,
                    partner_id: partner,
                    association: Association::Reseller,
                    basis: amount * Decimal::from(100),
                    rate: Decimal::new(1, 2),
                    share: Decimal::ONE,
                    amount,
                    designation: None,
                    days: None,
                    month: Month::from_ym(2026, month),
                };
                fold.add(
                    &a,
                    customer,
                    &format!("s{j}"),
                    Currency::parse(currency).unwrap(),
                );
            }
        }
        let period: Period = "2026-10..2026-11".parse().unwrap();
        crate::statements::build(
            &mut fold,
            &rules,
            &DesignationIndex::new(Vec::new()),
            period,
            None,
        )
        .unwrap()
    }

    #[test]
    fn what_the_file_leaves_out_is_read_back() {
        let set = set(3);
        let json = serde_json::to_vec(&set).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        // The program's name once, in `programs`.
        assert_eq!(text.matches("Program \\\"P\\\"").count(), 1, "{text}");
        assert_eq!(text.matches("\"program_name\"").count(), 0);
        assert_eq!(StatementSet::from_json(&json).unwrap(), set);
    }

    #[test]
    fn the_bytes_are_serdes_whatever_the_threads() {
        for partners in [0, 1, 2, 3, 7] {
            let set = set(partners);
            let mut want = serde_json::to_vec(&set).unwrap();
            want.push(b'\n');
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut got = Vec::new();
                pool.install(|| write_set(&mut got, &set)).unwrap();
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want.clone()).unwrap(),
                    "{partners} partners, {threads} threads"
                );
            }
        }
    }
}
