//! Parquet billing input (cargo feature `parquet`, via polars).
//!
//! A Parquet file goes through the same validation as a CSV file: its rows are
//! rendered, a row group at a time, into CSV chunks ([`crate::ingest::Chunk`]; comma-separated, CRLF,
//! one line per row) that the pipeline parses with [`BillingLayout::parse`](crate::ingest::billing::BillingLayout::parse)
//! like any other chunk. So rejects, row accounting and provenance are the same
//! for both. Line numbers: data row `n` (1-based) of a Parquet file is reported
//! as line `n + 1`, as if the file were a CSV with a header line.
//!
//! Only the columns porledger reads are decoded and rendered (the others are
//! left empty, whatever their type: polars never converts them).
//! Money is never read from binary floating point: a basis column stored as
//! `FLOAT`/`DOUBLE` is a fatal error. Decimal columns are rendered exactly from
//! their 128-bit integer and scale; dates as `YYYY-MM-DD`; timestamps as
//! `YYYY-MM-DDTHH:MM:SS[.fffffffff]` (a zoned timestamp in its own zone, as
//! a CSV timestamp with an offset keeps its local date); a CR or LF inside a text value
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

    use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone as _};
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

    /// Runs a step of the Parquet reader; a panic inside polars (a type or a
    /// file it does not handle) becomes an error naming the file instead of
    /// ending the process.
    fn guarded<T>(file: &InputFile, step: impl FnOnce() -> Result<T, Fatal>) -> Result<T, Fatal> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)) {
            Ok(r) => r,
            Err(payload) => {
                let why = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown failure".to_string());
                Err(Fatal::Input(format!(
                    "{}: cannot read Parquet: the reader failed ({why})",
                    file.display
                )))
            }
        }
    }

    /// The name of a Parquet (arrow) column type porledger does not read.
    fn type_name(dt: &ArrowDataType) -> String {
        match dt {
            ArrowDataType::Struct(_) => "struct".into(),
            ArrowDataType::Map(..) => "map".into(),
            ArrowDataType::List(_)
            | ArrowDataType::LargeList(_)
            | ArrowDataType::FixedSizeList(..) => "list".into(),
            ArrowDataType::Union(_) => "union".into(),
            ArrowDataType::Binary
            | ArrowDataType::LargeBinary
            | ArrowDataType::BinaryView
            | ArrowDataType::FixedSizeBinary(_) => "binary".into(),
            ArrowDataType::Time32(_) | ArrowDataType::Time64(_) => "time of day".into(),
            ArrowDataType::Duration(_) => "duration".into(),
            ArrowDataType::Interval(_) => "interval".into(),
            ArrowDataType::Float16 => "float16".into(),
            ArrowDataType::Extension(e) => format!("extension {}", e.name),
            ArrowDataType::Dictionary(_, v, _) => format!("dictionary of {}", type_name(v)),
            d => format!("{d:?}"),
        }
    }

    /// Whether porledger reads a column of this Parquet (arrow) type; checked
    /// before polars converts the type (it panics on some it is not built for).
    fn readable(dt: &ArrowDataType) -> bool {
        match dt {
            ArrowDataType::Null
            | ArrowDataType::Boolean
            | ArrowDataType::Int8
            | ArrowDataType::Int16
            | ArrowDataType::Int32
            | ArrowDataType::Int64
            | ArrowDataType::Int128
            | ArrowDataType::UInt8
            | ArrowDataType::UInt16
            | ArrowDataType::UInt32
            | ArrowDataType::UInt64
            | ArrowDataType::Float32
            | ArrowDataType::Float64
            | ArrowDataType::Date32
            | ArrowDataType::Date64
            | ArrowDataType::Timestamp(..)
            | ArrowDataType::Utf8
            | ArrowDataType::LargeUtf8
            | ArrowDataType::Utf8View
            | ArrowDataType::Decimal(..)
            | ArrowDataType::Decimal32(..)
            | ArrowDataType::Decimal64(..)
            | ArrowDataType::Decimal256(..) => true,
            // A dictionary (pandas `category`) column is read as its values.
            ArrowDataType::Dictionary(_, v, _) => {
                !matches!(v.as_ref(), ArrowDataType::Dictionary(..)) && readable(v)
            }
            _ => false,
        }
    }

    /// The zone of a timestamp column: a fixed offset (`+01:00`, `-0530`,
    /// `+01`, `UTC`, `Z`) or a time zone database name (`Europe/Berlin`).
    #[derive(Clone, Copy)]
    enum Zone {
        Fixed(FixedOffset),
        Named(chrono_tz::Tz),
    }

    impl Zone {
        fn parse(tz: &str) -> Option<Zone> {
            let t = tz.trim();
            if t.is_empty() || t == "Z" || t.eq_ignore_ascii_case("utc") {
                return Some(Zone::Fixed(FixedOffset::east_opt(0)?));
            }
            if let Some(rest) = t.strip_prefix(['+', '-']) {
                let sign = if t.starts_with('-') { -1 } else { 1 };
                // `hh`, `hhmm` or `hh:mm`.
                let digits: String = match rest.len() {
                    2 | 4 => rest.to_string(),
                    5 if rest.as_bytes()[2] == b':' => rest.replacen(':', "", 1),
                    _ => return None,
                };
                if !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let h: i32 = digits[..2].parse().ok()?;
                let m: i32 = if digits.len() == 4 {
                    digits[2..].parse().ok()?
                } else {
                    0
                };
                if m > 59 {
                    return None;
                }
                return FixedOffset::east_opt(sign * (h * 3600 + m * 60)).map(Zone::Fixed);
            }
            t.parse::<chrono_tz::Tz>().ok().map(Zone::Named)
        }

        /// The wall-clock time of an instant in this zone.
        fn local(self, utc: NaiveDateTime) -> NaiveDateTime {
            match self {
                Zone::Fixed(o) => o.from_utc_datetime(&utc).naive_local(),
                Zone::Named(z) => z.from_utc_datetime(&utc).naive_local(),
            }
        }
    }

    /// Reads the schema, recognises the billing format from the column names
    /// and checks that every column porledger reads has a type it can read
    /// exactly. The other columns are not looked at, whatever their type.
    pub fn open(file: &InputFile) -> Result<OpenedBilling, Fatal> {
        guarded(file, || open_unguarded(file))
    }

    fn open_unguarded(file: &InputFile) -> Result<OpenedBilling, Fatal> {
        let schema = reader(file)?.schema().map_err(polars_err(file))?;
        let fields: Vec<String> = schema.iter_names().map(|n| n.to_string()).collect();
        let layout = BillingLayout::from_header(&fields, b',').map_err(|e| Fatal::Data {
            file: file.display.clone(),
            line: 1,
            column: None,
            message: e.to_string(),
        })?;
        for f in Field::ALL {
            let Some(i) = layout.column(f) else { continue };
            let Some((_, arrow)) = schema.get_at_index(i) else {
                continue;
            };
            let bad = |why: String| Fatal::Data {
                file: file.display.clone(),
                line: 1,
                column: Some(fields[i].clone()),
                message: why,
            };
            let expected = "(expected text, decimal, integer, date or timestamp)";
            if !readable(&arrow.dtype) {
                return Err(bad(format!(
                    "has type {}, which porledger cannot read as a billing value {expected}",
                    type_name(&arrow.dtype)
                )));
            }
            if let ArrowDataType::Timestamp(_, Some(tz)) = &arrow.dtype {
                if Zone::parse(tz).is_none() {
                    return Err(bad(format!(
                        "is a timestamp in the time zone \"{tz}\", which porledger does not \
                         know (expected a zone name such as Europe/Berlin or an offset such \
                         as +01:00)"
                    )));
                }
            }
            // Safe now: the type is one polars converts without panicking.
            let dtype = DataType::from_arrow_field(arrow);
            match &dtype {
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
                | DataType::Float64
                | DataType::Categorical(..)
                | DataType::Enum(..) => {}
                d if d.is_integer() => {}
                _ => {
                    return Err(bad(format!(
                        "has type {dtype}, which porledger cannot read as a billing value \
                         {expected}"
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

    /// A timestamp as `YYYY-MM-DDTHH:MM:SS[.fffffffff]`: the wall-clock time
    /// in the column's zone when it has one (so its date is the local date,
    /// as a CSV timestamp with an offset is dated as written), as stored when
    /// it has none.
    fn timestamp_text(v: i64, unit: TimeUnit, zone: Option<Zone>) -> Option<String> {
        let utc = match unit {
            TimeUnit::Nanoseconds => Some(DateTime::from_timestamp_nanos(v)),
            TimeUnit::Microseconds => DateTime::from_timestamp_micros(v),
            TimeUnit::Milliseconds => DateTime::from_timestamp_millis(v),
        }?
        .naive_utc();
        let dt = match zone {
            Some(z) => z.local(utc),
            None => utc,
        };
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
            DataType::Datetime(unit, tz) => {
                let unit = *unit;
                let zone = match tz.as_deref() {
                    None => None,
                    Some(tz) => Some(Zone::parse(tz).ok_or_else(
                        || polars_err!(InvalidOperation: "unknown time zone \"{tz}\""),
                    )?),
                };
                Cells::Owned(
                    s.datetime()?
                        .physical()
                        .iter()
                        .map(|v| {
                            v.map(|v| {
                                timestamp_text(v, unit, zone).unwrap_or_else(|| format!("({v})"))
                            })
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
        let metadata = guarded(file, || {
            let mut r = reader(file)?;
            Ok(r.get_metadata().map_err(polars_err(file))?.clone())
        })?;
        let mut offset = 0usize;
        let mut line = header.next_line;
        for rg in &metadata.row_groups {
            let rows = rg.num_rows();
            if rows == 0 {
                continue;
            }
            // Only the columns porledger reads are decoded (projection): the
            // others are never converted, whatever their type.
            let df = guarded(file, || {
                let mut rd = reader(file)?
                    .with_projection(Some(used.clone()))
                    .with_slice(Some((offset, rows)));
                rd.set_metadata(metadata.clone());
                rd.finish().map_err(polars_err(file))
            })?;
            offset += rows;
            let cols: Vec<(usize, Cells)> = guarded(file, || {
                used.iter()
                    .map(|&i| {
                        let name = header.fields[i].as_str();
                        let col = df.column(name)?;
                        Ok((i, cells(col)?))
                    })
                    .collect::<PolarsResult<_>>()
                    .map_err(polars_err(file))
            })?;
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
        fn zones_parse() {
            let utc = NaiveDate::from_ymd_opt(2026, 10, 31)
                .unwrap()
                .and_hms_opt(23, 0, 0)
                .unwrap();
            let local = |z: &str| Zone::parse(z).map(|z| z.local(utc).to_string());
            let nov1 = Some("2026-11-01 00:00:00".to_string());
            assert_eq!(local("Europe/Berlin"), nov1);
            assert_eq!(local("+01:00"), nov1);
            assert_eq!(local("+0100"), nov1);
            assert_eq!(local("+01"), nov1);
            assert_eq!(local("UTC"), Some("2026-10-31 23:00:00".to_string()));
            assert_eq!(local("-05:30"), Some("2026-10-31 17:30:00".to_string()));
            for bad in [
                "+1:",
                "+1",
                "+01:0",
                "+0a:00",
                "+01:60",
                "+24:00",
                "+é1",
                "Mars/Olympus",
                "+01:00:00",
            ] {
                assert!(Zone::parse(bad).is_none(), "{bad}");
            }
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
