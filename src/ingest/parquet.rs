//! Parquet billing input (cargo feature `parquet`, via polars).
//!
//! A Parquet file goes through the same validation as a CSV file: its rows are
//! rendered, a row group at a time, into CSV chunks ([`crate::ingest::Chunk`]; comma-separated, CRLF,
//! one line per row) that the pipeline parses with [`BillingLayout::parse`](crate::ingest::billing::BillingLayout::parse)
//! like any other chunk. So rejects, row accounting and provenance are the same
//! for both. Line numbers: data row `n` (1-based) of a Parquet file is reported
//! as line `n + 1`, as if the file were a CSV with a header line.
//!
//! Only the columns porledger reads are rendered (the others are left empty).
//! Money is never read from binary floating point: a basis column stored as
//! `FLOAT`/`DOUBLE` is a fatal error. Decimal columns are rendered exactly from
//! their 128-bit integer and scale; dates as `YYYY-MM-DD`; timestamps as
//! `YYYY-MM-DDTHH:MM:SS[.fffffffff]` (UTC); a CR or LF inside a text value
//! becomes a space (one row, one line).

use std::path::Path;

use crate::error::Fatal;

#[cfg(not(feature = "parquet"))]
use super::{Chunk, FileDigest, Header, InputFile, OpenedBilling};

/// Whether a path names a Parquet file (by its extension).
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .map(|x| x.eq_ignore_ascii_case("parquet"))
        .unwrap_or(false)
}

/// The error of a build without the `parquet` feature.
pub fn feature_missing(what: &str) -> Fatal {
    Fatal::Input(format!(
        "{what} needs porledger built with the `parquet` feature: \
         cargo build --release --features parquet"
    ))
}

#[cfg(not(feature = "parquet"))]
pub fn open(file: &InputFile) -> Result<OpenedBilling, Fatal> {
    Err(feature_missing(&format!(
        "{}: reading Parquet billing files",
        file.display
    )))
}

#[cfg(not(feature = "parquet"))]
pub fn read_chunks(
    _file_idx: usize,
    file: &InputFile,
    _header: &Header,
    _chunk_size: usize,
    _hashing: super::Hashing,
    _spare: impl FnMut() -> Vec<u8>,
    _emit: impl FnMut(Chunk) -> bool,
) -> Result<FileDigest, Fatal> {
    Err(feature_missing(&format!(
        "{}: reading Parquet billing files",
        file.display
    )))
}

#[cfg(feature = "parquet")]
pub use imp::{open, read_chunks};

/// The text of a `FLOAT`/`DOUBLE` cell of a column that is not money (money
/// stored so is refused): pandas stores an integer ID column with blanks
/// (`ResellerMpnId`) as `DOUBLE`, so `500275.0` is the ID `500275` and `0.0`
/// the `0` of "no reseller", never the partner "500275.0"; NaN (pandas' blank)
/// is an empty cell. A whole number is written without a fraction up to 2^53
/// (every such integer is exact in a double); any other value as the shortest
/// text that reads back as the same double.
pub fn float_text(x: f64) -> Option<String> {
    if x.is_nan() {
        return None;
    }
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.fract() == 0.0 && x.abs() <= EXACT {
        // Exact: |x| <= 2^53 fits an i64 and the cast drops no digit.
        #[allow(clippy::cast_possible_truncation)]
        return Some((x as i64).to_string());
    }
    Some(x.to_string())
}

#[cfg(feature = "parquet")]
mod imp {
    use std::fs::File;

    use chrono::{DateTime, NaiveDate};
    use polars::prelude::*;

    use super::super::billing::{BillingLayout, Field};
    use super::super::{sha256_file, Chunk, FileDigest, Hashing, Header, InputFile, OpenedBilling};
    use crate::error::Fatal;

    fn polars_err(file: &InputFile) -> impl Fn(PolarsError) -> Fatal + '_ {
        move |e| Fatal::Input(format!("{}: cannot read Parquet: {e}", file.display))
    }

    fn reader(file: &InputFile) -> Result<ParquetReader<File>, Fatal> {
        let f = File::open(&file.path).map_err(|e| Fatal::io(&file.path, e))?;
        Ok(ParquetReader::new(f).read_parallel(ParallelStrategy::None))
    }

    /// Reads the schema, recognises the billing format from the column names
    /// and checks that every column porledger reads has a type it can read
    /// exactly.
    pub fn open(file: &InputFile) -> Result<OpenedBilling, Fatal> {
        let schema = reader(file)?.schema().map_err(polars_err(file))?;
        let fields: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
        let dtypes: Vec<DataType> = schema
            .iter_values()
            .map(DataType::from_arrow_field)
            .collect();
        let layout = BillingLayout::from_header(&fields, b',').map_err(|e| Fatal::Data {
            file: file.display.clone(),
            line: 1,
            column: None,
            message: e.to_string(),
        })?;
        for f in Field::ALL {
            let Some(i) = layout.column(f) else { continue };
            let Some(dtype) = dtypes.get(i) else { continue };
            let bad = |why: String| Fatal::Data {
                file: file.display.clone(),
                line: 1,
                column: Some(fields[i].clone()),
                message: why,
            };
            match dtype {
                DataType::Float32 | DataType::Float64 if f == Field::Subtotal => {
                    return Err(bad(format!(
                        "the money column is stored as {dtype} (binary floating point): \
                         porledger does not turn floats into money; write it as DECIMAL \
                         or as text (e.g. polars Decimal(38, 10), DuckDB DECIMAL(38, 10))"
                    )))
                }
                DataType::String
                | DataType::Decimal(..)
                | DataType::Date
                | DataType::Datetime(..)
                | DataType::Boolean
                | DataType::Null
                | DataType::Float32
                | DataType::Float64 => {}
                d if d.is_integer() => {}
                _ => {
                    return Err(bad(format!(
                        "has type {dtype}, which porledger cannot read as a billing value \
                         (expected text, decimal, integer, date or timestamp)"
                    )))
                }
            }
        }
        Ok(OpenedBilling {
            layout,
            header: Header {
                fields,
                delimiter: b',',
                byte_len: 0,
                // Data row 1 is reported as line 2, as in a CSV with a header.
                next_line: 2,
            },
        })
    }

    /// One rendered column of a batch: a text per row (`None` = null).
    enum Cells<'a> {
        Borrowed(Vec<Option<&'a str>>),
        Owned(Vec<Option<String>>),
    }

    impl Cells<'_> {
        fn get(&self, i: usize) -> Option<&str> {
            match self {
                Cells::Borrowed(v) => v[i],
                Cells::Owned(v) => v[i].as_deref(),
            }
        }
    }

    /// An exact decimal text from an unscaled integer and a scale.
    pub fn decimal_text(v: i128, scale: usize) -> String {
        let digits = v.unsigned_abs().to_string();
        let mut s = String::with_capacity(digits.len() + scale + 3);
        if v < 0 {
            s.push('-');
        }
        if scale == 0 {
            s.push_str(&digits);
        } else if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            s.push_str(int);
            s.push('.');
            s.push_str(frac);
        } else {
            s.push_str("0.");
            s.extend(std::iter::repeat_n('0', scale - digits.len()));
            s.push_str(&digits);
        }
        s
    }

    fn timestamp_text(v: i64, unit: TimeUnit) -> Option<String> {
        let dt = match unit {
            TimeUnit::Nanoseconds => Some(DateTime::from_timestamp_nanos(v)),
            TimeUnit::Microseconds => DateTime::from_timestamp_micros(v),
            TimeUnit::Milliseconds => DateTime::from_timestamp_millis(v),
        }?
        .naive_utc();
        let mut s = dt.format("%Y-%m-%dT%H:%M:%S").to_string();
        let nanos = dt.and_utc().timestamp_subsec_nanos();
        if nanos != 0 {
            s.push_str(&format!(".{nanos:09}"));
        }
        Some(s)
    }

    fn cells<'a>(col: &'a Column) -> PolarsResult<Cells<'a>> {
        let s = col.as_materialized_series();
        Ok(match s.dtype() {
            DataType::String => Cells::Borrowed(s.str()?.iter().collect()),
            DataType::Decimal(_, scale) => {
                let scale = *scale;
                Cells::Owned(
                    s.decimal()?
                        .physical()
                        .iter()
                        .map(|v| v.map(|v| decimal_text(v, scale)))
                        .collect(),
                )
            }
            DataType::Date => {
                let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
                Cells::Owned(
                    s.date()?
                        .physical()
                        .iter()
                        .map(|v| {
                            v.map(|d| {
                                epoch
                                    .checked_add_signed(chrono::TimeDelta::days(d as i64))
                                    .map(|d| d.to_string())
                                    .unwrap_or_else(|| format!("(day {d})"))
                            })
                        })
                        .collect(),
                )
            }
            DataType::Datetime(unit, _) => {
                let unit = *unit;
                Cells::Owned(
                    s.datetime()?
                        .physical()
                        .iter()
                        .map(|v| {
                            v.map(|v| timestamp_text(v, unit).unwrap_or_else(|| format!("({v})")))
                        })
                        .collect(),
                )
            }
            DataType::Float32 | DataType::Float64 => {
                let f = s.cast(&DataType::Float64)?;
                Cells::Owned(
                    f.f64()?
                        .iter()
                        .map(|v| v.and_then(super::float_text))
                        .collect(),
                )
            }
            _ => {
                let t = s.cast(&DataType::String)?;
                Cells::Owned(t.str()?.iter().map(|v| v.map(str::to_string)).collect())
            }
        })
    }

    /// Appends a CSV field (quoted when needed; CR and LF become spaces).
    fn push_field(buf: &mut Vec<u8>, v: &str) {
        let b = v.as_bytes();
        let quote = b.iter().any(|&c| matches!(c, b',' | b'"' | b'\r' | b'\n'));
        if !quote {
            buf.extend_from_slice(b);
            return;
        }
        buf.push(b'"');
        for &c in b {
            match c {
                b'"' => buf.extend_from_slice(b"\"\""),
                b'\r' | b'\n' => buf.push(b' '),
                c => buf.push(c),
            }
        }
        buf.push(b'"');
    }

    /// Streams a Parquet file's rows as CSV chunks, a row group at a time, and
    /// hashes the file (with [`Hashing::Sha256`]).
    pub fn read_chunks(
        file_idx: usize,
        file: &InputFile,
        header: &Header,
        chunk_size: usize,
        hashing: Hashing,
        mut spare: impl FnMut() -> Vec<u8>,
        mut emit: impl FnMut(Chunk) -> bool,
    ) -> Result<FileDigest, Fatal> {
        let digest = match hashing {
            Hashing::Sha256 => sha256_file(&file.path)?,
            Hashing::Skip => FileDigest {
                sha256: String::new(),
                bytes: file.size,
            },
        };
        let layout = BillingLayout::from_header(&header.fields, b',').map_err(|e| Fatal::Data {
            file: file.display.clone(),
            line: 1,
            column: None,
            message: e.to_string(),
        })?;
        let used: Vec<usize> = {
            let mut u: Vec<usize> = Field::ALL
                .iter()
                .filter_map(|f| layout.column(*f))
                .collect();
            u.sort_unstable();
            u.dedup();
            u
        };
        let n_fields = header.fields.len();
        let mut r = reader(file)?;
        let metadata = r.get_metadata().map_err(polars_err(file))?.clone();
        let mut offset = 0usize;
        let mut line = header.next_line;
        for rg in &metadata.row_groups {
            let rows = rg.num_rows();
            if rows == 0 {
                continue;
            }
            let mut rd = reader(file)?
                .with_projection(Some(used.clone()))
                .with_slice(Some((offset, rows)));
            rd.set_metadata(metadata.clone());
            let df = rd.finish().map_err(polars_err(file))?;
            offset += rows;
            let cols: Vec<(usize, Cells)> = used
                .iter()
                .map(|&i| {
                    let name = header.fields[i].as_str();
                    let col = df.column(name)?;
                    Ok((i, cells(col)?))
                })
                .collect::<PolarsResult<_>>()
                .map_err(polars_err(file))?;
            let mut buf = spare();
            let mut first_line = line;
            for row in 0..df.height() {
                let mut next = cols.iter().peekable();
                for j in 0..n_fields {
                    if j > 0 {
                        buf.push(b',');
                    }
                    if let Some((_, c)) = next.next_if(|(i, _)| *i == j) {
                        if let Some(v) = c.get(row) {
                            push_field(&mut buf, v);
                        }
                    }
                }
                buf.extend_from_slice(b"\r\n");
                line += 1;
                if buf.len() >= chunk_size {
                    let data = std::mem::replace(&mut buf, spare());
                    let chunk = Chunk {
                        file: file_idx,
                        first_line,
                        data,
                        kind: super::super::records::ChunkKind::Records,
                    };
                    first_line = line;
                    if !emit(chunk) {
                        return Ok(digest);
                    }
                }
            }
            if !buf.is_empty() {
                let chunk = Chunk {
                    file: file_idx,
                    first_line,
                    data: buf,
                    kind: super::super::records::ChunkKind::Records,
                };
                if !emit(chunk) {
                    return Ok(digest);
                }
            }
        }
        Ok(digest)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn decimals_render_exactly() {
            assert_eq!(decimal_text(1234, 2), "12.34");
            assert_eq!(decimal_text(-5, 3), "-0.005");
            assert_eq!(decimal_text(0, 2), "0.00");
            assert_eq!(decimal_text(42, 0), "42");
            assert_eq!(
                decimal_text(i128::MAX, 10),
                "17014118346046923173168730371.5884105727"
            );
        }

        #[test]
        fn fields_stay_on_one_line() {
            let mut b = Vec::new();
            push_field(&mut b, "a,\"b\"\r\nc");
            assert_eq!(b, b"\"a,\"\"b\"\"  c\"");
        }
    }
}

#[cfg(test)]
mod float_tests {
    use super::float_text;

    #[test]
    fn a_float_id_is_its_whole_number() {
        assert_eq!(float_text(500275.0).as_deref(), Some("500275"));
        assert_eq!(float_text(0.0).as_deref(), Some("0"));
        assert_eq!(float_text(-1.0).as_deref(), Some("-1"));
        assert_eq!(float_text(f64::NAN), None);
        assert_eq!(
            float_text(9_007_199_254_740_992.0).as_deref(),
            Some("9007199254740992")
        );
        assert_eq!(float_text(2.5).as_deref(), Some("2.5"));
        assert_eq!(float_text(0.1).as_deref(), Some("0.1"));
        assert_eq!(float_text(1e20).as_deref(), Some("100000000000000000000"));
    }
}
