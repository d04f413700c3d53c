//! Whole-sample tests: determinism, sizes, and porledger reading what it wrote.

use super::*;
use crate::config::parse_rules;
use crate::ingest::designations::parse_designations;
use crate::ingest::{self, open_billing, read_chunks, InputFile};
use crate::pipeline::{self, ChunkOutput, Sink, StreamSettings};
use rust_decimal::Decimal;

fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("billing"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.push(dir.join("designations.csv"));
    files.push(dir.join("rules.toml"));
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn sample(rows: u64, seed: u64, files: Option<usize>) -> (tempfile::TempDir, Written) {
    let dir = tempfile::tempdir().unwrap();
    let digests = crate::render::publish::Written::new();
    let w = generate(dir.path(), Plan::new(rows, seed, files).unwrap(), &digests).unwrap();
    (dir, w)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, _) = sample(3_000, 42, Some(4));
    let (b, _) = sample(3_000, 42, Some(4));
    let (c, _) = sample(3_000, 43, Some(4));
    assert_eq!(read_all(a.path()), read_all(b.path()));
    let (fa, fc) = (read_all(a.path()), read_all(c.path()));
    for i in 0..4 {
        assert_ne!(fa[i].1, fc[i].1, "billing file {i} should differ");
    }
    assert_ne!(fa[4].1, fc[4].1, "designations should differ");
}

#[test]
fn sizes_scale_with_rows() {
    let p = Plan::new(5_000_000, 1, None).unwrap();
    assert_eq!((p.files, p.customers, p.partners), (10, 20_000, 50));
    assert_eq!((p.slots, p.months), (100_000, 50));
    assert_eq!(p.first_month().to_string(), "2022-09");
    let p = Plan::new(10, 1, None).unwrap();
    assert_eq!((p.files, p.customers, p.partners), (1, 5, 4));
    assert_eq!(p.first_month(), LAST_MONTH);
    assert!(Plan::new(10, 1, Some(0)).is_err());
    assert!(Plan::new(3, 1, Some(4)).is_err());
    let p = Plan::new(7, 1, Some(3)).unwrap();
    let parts: Vec<(u64, u64)> = (0..3).map(|k| p.file_rows(k)).collect();
    assert_eq!(parts, [(0, 2), (2, 4), (4, 7)]);
}

/// Every file is read by porledger's own ingest: the format is recognised,
/// every record has 46 fields and parses, the row count is exact and
/// amounts add up (`Subtotal = UnitPrice x Quantity`, `Total = Subtotal + TaxTotal`).
#[test]
fn output_parses_with_porledger_ingest() {
    let rows = 20_001;
    let (dir, w) = sample(rows, 9, Some(4));
    let mut seen = 0u64;
    let mut trials = 0;
    let mut negative = 0;
    let mut multi_line_names = 0;
    for path in &w.billing_files {
        let file = InputFile {
            path: path.clone(),
            display: path.display().to_string(),
            size: std::fs::metadata(path).unwrap().len(),
        };
        let opened = open_billing(&file).unwrap();
        let layout = &opened.layout;
        assert_eq!(layout.format, ingest::BillingFormat::InvoiceReconciliation);
        assert_eq!(layout.header.len(), 46);
        let col = |names: &[&str]| {
            layout
                .header
                .iter()
                .position(|h| names.contains(&ingest::billing::normalize_header(h).as_str()))
                .unwrap()
        };
        let (unit, qty, sub, tax, total) = (
            col(&["unitprice"]),
            col(&["quantity"]),
            col(&["subtotal"]),
            col(&["taxtotal"]),
            col(&["total", "totalforcustomer"]),
        );
        read_chunks(
            0,
            &file,
            &opened.header,
            1 << 16,
            crate::ingest::Hashing::Sha256,
            Vec::new,
            |chunk| {
                let mut rdr = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(&chunk.data[..]);
                for rec in rdr.byte_records() {
                    let rec = rec.unwrap();
                    assert_eq!(rec.len(), 46);
                    let line = layout.parse(&rec).unwrap();
                    let num = |i: usize| -> Decimal {
                        std::str::from_utf8(&rec[i]).unwrap().parse().unwrap()
                    };
                    assert_eq!(num(unit) * num(qty), line.subtotal);
                    assert_eq!(num(sub) + num(tax), num(total));
                    trials += line.qualifiers.contains("Trial") as u32;
                    negative += line.subtotal.is_sign_negative() as u32;
                    multi_line_names += line.customer_name.contains('\n') as u32;
                    seen += 1;
                }
                true
            },
        )
        .unwrap();
    }
    assert_eq!(seen, rows);
    assert!(trials > 0 && negative > 0 && multi_line_names > 0);
    let d = std::fs::read(dir.path().join("designations.csv")).unwrap();
    let d = parse_designations("designations.csv", &d).unwrap();
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    assert!(d.rows.len() > 5);
    parse_rules(RULES_TOML).unwrap();
}

/// A generated sample of `rows` rows in 4 files, loaded as a run loads it
/// (the directory must outlive the inputs' use).
fn sample_inputs(rows: u64) -> (tempfile::TempDir, pipeline::Inputs) {
    let (dir, _) = sample(rows, 3, Some(4));
    let inputs = pipeline::load_inputs(
        &[dir.path().join("billing")],
        &dir.path().join("designations.csv"),
        &dir.path().join("rules.toml"),
    )
    .unwrap();
    (dir, inputs)
}

struct Count(u64);
impl Sink for Count {
    fn chunk(&mut self, out: &ChunkOutput) -> Result<(), Fatal> {
        self.0 += out.n_rejects;
        Ok(())
    }
}

/// The whole pipeline accepts every generated row: nothing is rejected, and
/// the sample shows every kind of outcome.
#[test]
fn pipeline_rejects_nothing() {
    let (_dir, inputs) = sample_inputs(6_000);
    assert!(inputs.designations.rejects.is_empty());
    assert!(crate::quality::check_designations(inputs.index.rows(), "d").is_empty());
    let settings = StreamSettings {
        threads: 2,
        chunk_size: 1 << 16,
        period: None,
        max_rejects: None,
        outputs: true,
        spill: None,
    };
    let mut sink = Count(0);
    let s = pipeline::stream(&inputs, &settings, &mut sink, &(), 0).unwrap();
    let t = s.fold.totals();
    assert_eq!((s.rejects, sink.0, t.rejected), (0, 0, 0));
    assert_eq!(t.rows, 6_000);
    assert!(t.accrued > t.rows / 2, "{t:?}");
    for reason in crate::accrue::Reason::BILLING {
        // Tax rows (not-revenue) come only from FOCUS files, which the
        // sample does not write.
        if !matches!(
            reason,
            crate::accrue::Reason::RuleNotInForce | crate::accrue::Reason::NotRevenue
        ) {
            assert!(
                t.not_eligible_by_reason[reason as usize] > 0,
                "{reason:?}: {t:?}"
            );
        }
    }
}

/// Counts the bytes of output rows the stream hands over.
struct Bytes(usize);
impl Sink for Bytes {
    fn chunk(&mut self, out: &ChunkOutput) -> Result<(), Fatal> {
        self.0 += out.ledger.len() + out.not_eligible.len();
        Ok(())
    }
}

/// Without outputs (`validate`), the stream counts every row exactly as a
/// run does, whatever the threads, but holds no group and formats no row.
#[test]
fn a_stream_without_outputs_counts_the_same_and_keeps_nothing() {
    let (_dir, inputs) = sample_inputs(4_000);
    let settings = |threads, outputs| StreamSettings {
        threads,
        chunk_size: 1 << 15,
        period: None,
        max_rejects: None,
        outputs,
        spill: None,
    };
    let mut full = Bytes(0);
    let run = pipeline::stream(&inputs, &settings(2, true), &mut full, &(), 0).unwrap();
    assert!(full.0 > 0 && !run.fold.details.is_empty());
    for threads in [1, 2] {
        let mut none = Bytes(0);
        let v = pipeline::stream(&inputs, &settings(threads, false), &mut none, &(), 0).unwrap();
        assert_eq!(none.0, 0);
        assert!(v.fold.details.is_empty());
        assert_eq!(
            format!("{:?}", v.fold.totals()),
            format!("{:?}", run.fold.totals())
        );
        assert_eq!(v.rejects, run.rejects);
    }
}

#[test]
fn rows_past_the_limit_are_refused_before_anything_is_planned() {
    let e = Plan::new(MAX_ROWS + 1, 1, None).unwrap_err().to_string();
    assert!(
        e.contains("--rows") && e.contains("at most 1000000000"),
        "{e}"
    );
    assert!(Plan::new(u64::MAX, 1, None).is_err());
    assert!(Plan::new(MAX_ROWS, 1, None).is_ok());
}
