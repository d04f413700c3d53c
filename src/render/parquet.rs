//! `ledger.parquet` (`run --ledger-format parquet`, cargo feature `parquet`).
//!
//! The ledger is first written as CSV by the same fast path as always, then
//! converted here, a row group of [`ROW_GROUP_ROWS`] rows at a time, into a
//! typed Parquet file; the CSV is removed. So both formats hold the same rows,
//! in the same order, with the same values.
//!
//! Schema (column order of `ledger.csv`; names and types from
//! [`crate::ledger::LEDGER_COLUMNS`]):
//!
//! | column | type |
//! |---|---|
//! | partner_id, customer_id, program_id, association, subscription_id, source_file, currency, reverses | String |
//! | charge_date | Date |
//! | accrual_month | String, `YYYY-MM` |
//! | source_line | Int64 |
//! | basis_amount, rate, share, accrual_amount | Decimal(38, 24) |
//! | designation_line, credited_days, charge_days | Int64, null when empty |
//!
//! Amounts are exact: a value with more than [`LEDGER_SCALE`] decimals, or too
//! large for `Decimal(38, 24)`, fails the run (nothing is published) instead of
//! being rounded. Files are deterministic: same rows, same bytes (fixed row
//! groups, zstd, no timestamps in the metadata).

/// Fractional digits of the ledger's decimal columns.
/// 24 decimals: a prorated basis (6) x an equal-split share (10) x a rate (up
/// to 8) stays exact; 14 integer digits remain for any single accrual.
pub const LEDGER_SCALE: u32 = 24;
/// Total digits of the ledger's decimal columns (the Parquet/Arrow maximum for 128 bits).
pub const LEDGER_PRECISION: usize = 38;
/// Rows per row group.
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Whether this build can write `ledger.parquet`.
pub const AVAILABLE: bool = cfg!(feature = "parquet");

#[cfg(feature = "parquet")]
pub use imp::{decimal_to_i128, write_ledger};

/// Replaces the staged `ledger.csv` in `dir` by `ledger.parquet`.
pub fn convert_ledger(dir: &std::path::Path) -> Result<(), crate::error::Fatal> {
    #[cfg(feature = "parquet")]
    {
        let csv = dir.join("ledger.csv");
        write_ledger(&csv, &dir.join("ledger.parquet"))?;
        std::fs::remove_file(&csv).map_err(|e| crate::error::Fatal::io(&csv, e))
    }
    #[cfg(not(feature = "parquet"))]
    {
        let _ = dir;
        Err(crate::ingest::parquet::feature_missing(
            "--ledger-format parquet",
        ))
    }
}

#[cfg(feature = "parquet")]
mod imp {
    use std::fs::File;
    use std::path::Path;

    use chrono::NaiveDate;
    use polars::prelude::*;
    use rust_decimal::Decimal;

    use super::*;
    use crate::error::Fatal;
    // Columns and their types come from the one ledger definition.
    use crate::ledger::{
        DATE_COLUMN as DATE, DECIMAL_COLUMNS as DECIMALS, INT_COLUMNS as INTS, LEDGER_HEADER,
    };

    /// `d` as an integer scaled by 10^[`LEDGER_SCALE`], or `None` when it
    /// cannot be held exactly in `Decimal(38, 24)`.
    pub fn decimal_to_i128(d: Decimal) -> Option<i128> {
        let d = d.normalize();
        if d.scale() > LEDGER_SCALE {
            return None;
        }
        let v = d
            .mantissa()
            .checked_mul(10i128.checked_pow(LEDGER_SCALE - d.scale())?)?;
        (v.unsigned_abs() < 10u128.pow(LEDGER_PRECISION as u32)).then_some(v)
    }

    /// Column values of one row group.
    #[derive(Default)]
    struct Batch {
        text: Vec<Vec<String>>,
        decimals: Vec<Vec<i128>>,
        dates: Vec<i32>,
        ints: Vec<Vec<Option<i64>>>,
        rows: usize,
    }

    impl Batch {
        fn new() -> Batch {
            Batch {
                text: vec![Vec::new(); LEDGER_HEADER.len()],
                decimals: vec![Vec::new(); DECIMALS.len()],
                ints: vec![Vec::new(); INTS.len()],
                ..Batch::default()
            }
        }

        fn frame(&mut self) -> PolarsResult<DataFrame> {
            let mut cols: Vec<Column> = Vec::with_capacity(LEDGER_HEADER.len());
            for (i, name) in LEDGER_HEADER.iter().enumerate() {
                let name: PlSmallStr = (*name).into();
                let s = if let Some(k) = DECIMALS.iter().position(|&c| c == i) {
                    Int128Chunked::from_vec(name, std::mem::take(&mut self.decimals[k]))
                        .into_decimal(LEDGER_PRECISION, LEDGER_SCALE as usize)?
                        .into_series()
                } else if let Some(k) = INTS.iter().position(|&c| c == i) {
                    Int64Chunked::from_slice_options(name, &std::mem::take(&mut self.ints[k]))
                        .into_series()
                } else if i == DATE {
                    Int32Chunked::from_vec(name, std::mem::take(&mut self.dates))
                        .into_date()
                        .into_series()
                } else {
                    Series::new(name, std::mem::take(&mut self.text[i]))
                };
                cols.push(s.into());
            }
            let df = DataFrame::new(self.rows, cols)?;
            self.rows = 0;
            Ok(df)
        }
    }

    /// Converts the staged `ledger.csv` at `csv_path` into `out_path`.
    pub fn write_ledger(csv_path: &Path, out_path: &Path) -> Result<(), Fatal> {
        let perr = |e: PolarsError| Fatal::Io {
            path: out_path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        };
        // Named as published (`ledger.csv`, not the staging directory's), with
        // the input line the row comes from.
        let source_at = |name: &str| LEDGER_HEADER.iter().position(|&c| c == name);
        let (file_col, line_col) = (source_at("source_file"), source_at("source_line"));
        let bad_in = |rec: &csv::StringRecord, line: u64, column: &str, value: &str, why: &str| {
            let from = match (
                file_col.and_then(|i| rec.get(i)),
                line_col.and_then(|i| rec.get(i)),
            ) {
                (Some(f), Some(l)) if !f.is_empty() => format!(" (the accrual of {f}:{l})"),
                _ => String::new(),
            };
            Fatal::Data {
                file: "ledger.csv".into(),
                line,
                column: Some(column.to_string()),
                message: format!(
                    "value '{value}'{from} cannot go into ledger.parquet: {why}; \
                     write this run's ledger as CSV (--ledger-format csv)"
                ),
            }
        };
        let f = File::open(csv_path).map_err(|e| Fatal::io(csv_path, e))?;
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(std::io::BufReader::with_capacity(1 << 20, f));
        let out = File::create(out_path).map_err(|e| Fatal::io(out_path, e))?;
        let mut batch = Batch::new();
        let schema = batch.frame().map_err(perr)?.schema().clone();
        // Unbuffered: the writer emits whole compressed pages, and a BufWriter
        // would flush its last bytes on drop, where an error is lost.
        let mut writer = ParquetWriter::new(out)
            .with_compression(ParquetCompression::Zstd(None))
            .with_statistics(StatisticsOptions::default())
            .with_row_group_size(Some(ROW_GROUP_ROWS))
            .set_parallel(false)
            .batched(&schema)
            .map_err(perr)?;
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
        let mut rec = csv::StringRecord::new();
        let mut line = 1u64;
        loop {
            let more = rdr.read_record(&mut rec).map_err(|e| Fatal::Data {
                file: csv_path.display().to_string(),
                line: line + 1,
                column: None,
                message: e.to_string(),
            })?;
            if more {
                line += 1;
                for (i, v) in rec.iter().enumerate() {
                    let col = LEDGER_HEADER.get(i).copied().unwrap_or("(extra)");
                    if let Some(k) = DECIMALS.iter().position(|&c| c == i) {
                        let d: Decimal = v
                            .parse()
                            .map_err(|_| bad_in(&rec, line, col, v, "not a decimal"))?;
                        let x = decimal_to_i128(d).ok_or_else(|| {
                            bad_in(
                                &rec,
                                line,
                                col,
                                v,
                                "more than 24 decimals or 14 integer digits: Decimal(38, 24) \
                                 would not hold it exactly",
                            )
                        })?;
                        batch.decimals[k].push(x);
                    } else if let Some(k) = INTS.iter().position(|&c| c == i) {
                        let n = if v.is_empty() {
                            None
                        } else {
                            Some(
                                v.parse::<i64>()
                                    .map_err(|_| bad_in(&rec, line, col, v, "not an integer"))?,
                            )
                        };
                        batch.ints[k].push(n);
                    } else if i == DATE {
                        let d = NaiveDate::parse_from_str(v, "%Y-%m-%d")
                            .map_err(|_| bad_in(&rec, line, col, v, "not a date"))?;
                        batch.dates.push((d - epoch).num_days() as i32);
                    } else if i < LEDGER_HEADER.len() {
                        batch.text[i].push(v.to_string());
                    } else {
                        return Err(bad_in(
                            &rec,
                            line,
                            col,
                            v,
                            "more fields than the ledger header",
                        ));
                    }
                }
                if rec.len() != LEDGER_HEADER.len() {
                    return Err(bad_in(
                        &rec,
                        line,
                        "(row)",
                        "",
                        "fewer fields than the ledger header",
                    ));
                }
                batch.rows += 1;
            }
            if batch.rows == ROW_GROUP_ROWS || (!more && batch.rows > 0) {
                let df = batch.frame().map_err(perr)?;
                writer.write_batch(&df).map_err(perr)?;
            }
            if !more {
                break;
            }
        }
        writer.finish().map_err(perr)?;
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn decimals_fit_exactly_or_not_at_all() {
            // Decimal(38, 24): 24 decimals, 14 integer digits.
            let d = |s: &str| s.parse::<Decimal>().unwrap();
            assert_eq!(decimal_to_i128(d("1.5")), Some(15 * 10i128.pow(23)));
            assert_eq!(decimal_to_i128(d("-0.000000000000000000000001")), Some(-1));
            assert_eq!(
                decimal_to_i128(d("2.500000000000000000000000000")),
                Some(25 * 10i128.pow(23))
            );
            assert_eq!(decimal_to_i128(d("0.0000000000000000000000001")), None);
            assert_eq!(decimal_to_i128(d("123456789012345")), None);
            assert!(decimal_to_i128(d("12345678901234")).is_some());
            // A prorated basis (6) x an equal-split share (10) x a rate (4 decimals).
            let exact = d("322.580645") * d("0.3333333333") * d("0.0125");
            assert_eq!(exact.scale(), 20);
            assert!(decimal_to_i128(exact).is_some());
        }
    }
}
