//! CSV text, shared by every writer and by the readers of porledger's own
//! outputs: the spreadsheet-formula escape and its inverse, and the fast row
//! buffer of the row-per-line outputs (ledger, not-eligible, rejects).
//!
//! Below both [`crate::ledger`] (which defines the row files) and
//! [`crate::render`] (which writes every file), so neither leans on the other
//! for these.

use std::borrow::Cow;
use std::path::Path;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::error::Fatal;

/// Where each of `names` is in the header of one of porledger's own files
/// (`what`, e.g. `attainment.csv`, read from `file`), in any order; extra
/// columns are ignored. A missing column is an error on line 1 naming it.
pub fn columns<const N: usize>(
    header: &csv::StringRecord,
    file: &Path,
    what: &str,
    names: [&str; N],
) -> Result<[usize; N], Fatal> {
    let found = columns_or_absent(header, file, what, names, &[])?;
    Ok(found.map(|p| p.expect("every column is required")))
}

/// [`columns`], where the columns named in `optional` (added in a later
/// version of the file) may be absent: `None`.
pub fn columns_or_absent<const N: usize>(
    header: &csv::StringRecord,
    file: &Path,
    what: &str,
    names: [&str; N],
    optional: &[&str],
) -> Result<[Option<usize>; N], Fatal> {
    let mut pos = [None; N];
    for (p, name) in pos.iter_mut().zip(names) {
        *p = header.iter().position(|h| h == name);
        if p.is_none() && !optional.contains(&name) {
            return Err(Fatal::Data {
                file: file.display().to_string(),
                line: 1,
                column: Some(name.to_string()),
                message: format!("no such column: not a porledger {what}"),
            });
        }
    }
    Ok(pos)
}

/// Neutralises a text value that a spreadsheet would run as a formula: a leading
/// `=`, `+`, `-`, `@`, TAB or CR gets a `'` in front, unless the value is a
/// plain number (`-12.50` stays a number).
///
/// A value that starts with `'`s before such a character gets one more `'`
/// (`'=P1` is written `''=P1`), so that no two values are written alike and
/// [`excel_unescape`] gives back every value written: `=P1` and `'=P1` are
/// two partners, and read back as two.
pub fn excel_safe(s: &str) -> Cow<'_, str> {
    if needs_escape(s) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// `field` as a `&str`, when it is a sub-slice of `whole` (a record's bytes,
/// checked as UTF-8 once). Fields are cut at ASCII delimiters and quotes, so
/// they start and end on character boundaries in the file; `str::get` checks
/// that anyway (`None` for a field that ends inside a character).
pub fn within<'r>(whole: &'r str, field: &[u8]) -> Option<&'r str> {
    let start = (field.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    whole.get(start..start.checked_add(field.len())?)
}

/// A record's fields, one after another, as UTF-8 text when every field is
/// a whole piece of it (see [`within`]); `None` otherwise (a byte that is not
/// UTF-8, or a field that splits a character). Checked once per record.
pub fn record_text(rec: &simd_csv::ByteRecord) -> Option<&str> {
    simdutf8::basic::from_utf8(rec.as_slice())
        .ok()
        .filter(|w| rec.iter().all(|f| within(w, f).is_some()))
}

/// Whether [`excel_safe`] puts a `'` in front of `s`: when `s` without its
/// leading `'`s starts a formula.
fn needs_escape(s: &str) -> bool {
    starts_formula(s.trim_start_matches('\''))
}

fn starts_formula(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(b'=' | b'@' | b'\t' | b'\r') => true,
        Some(b'+' | b'-') => !is_number(s),
        _ => false,
    }
}

/// Undoes [`excel_safe`]: `'-P1` reads back as `-P1`, `''-P1` as `'-P1`. A
/// value that `excel_safe` leaves alone is returned unchanged (so is a `'`
/// that `excel_safe` would not have added, as in `'quoted'`). For reading
/// back keys from porledger's own outputs; see [`crate::ledger`].
pub fn excel_unescape(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if needs_escape(rest) => rest,
        _ => s,
    }
}

fn is_number(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    !t.is_empty()
        && t.bytes().filter(|&b| b == b'.').count() <= 1
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && t.bytes().any(|b| b.is_ascii_digit())
}

/// A fast writer for the hot, row-per-line outputs (ledger, not-eligible,
/// rejects): writes straight into a byte buffer with the same quoting as the
/// csv crate (a field is quoted when it holds `,`, `"`, CR or LF) and the same
/// formula neutralisation as every other output, without allocating per field.
#[derive(Default)]
pub struct RowBuf {
    pub buf: Vec<u8>,
    fields: usize,
}

impl RowBuf {
    pub fn with_buffer(buf: Vec<u8>) -> RowBuf {
        RowBuf { buf, fields: 0 }
    }

    fn sep(&mut self) {
        if self.fields > 0 {
            self.buf.push(b',');
        }
        self.fields += 1;
    }

    /// A text field: neutralised and quoted as needed.
    pub fn text(&mut self, s: &str) {
        self.sep();
        let s = excel_safe(s);
        let b = s.as_bytes();
        if needs_quotes(b) {
            // Copied a run at a time between the quotes that are doubled
            // (long texts with a comma, such as explanations, are common).
            self.buf.push(b'"');
            let mut rest = b;
            while let Some(i) = memchr::memchr(b'"', rest) {
                self.buf.extend_from_slice(&rest[..=i]);
                self.buf.push(b'"');
                rest = &rest[i + 1..];
            }
            self.buf.extend_from_slice(rest);
            self.buf.push(b'"');
        } else {
            self.buf.extend_from_slice(b);
        }
    }

    /// An unsigned integer.
    pub fn num(&mut self, n: u64) {
        self.sep();
        push_uint(&mut self.buf, n);
    }

    /// An exact decimal, with at least `min_dp` decimals (see [`format_exact_dp`](crate::money::format_exact_dp)).
    pub fn decimal(&mut self, d: Decimal, min_dp: u32) {
        use std::io::Write as _;
        self.sep();
        let mut n = d.normalize();
        if n.scale() < min_dp {
            n.rescale(min_dp);
        }
        if n.is_zero() {
            n.set_sign_positive(true);
        }
        if !push_decimal_fast(&mut self.buf, n) {
            let _ = write!(self.buf, "{n}");
        }
    }

    /// A decimal exactly as its `Display` writes it (scale kept: a rounded
    /// amount `12.50` stays `12.50`).
    pub fn display(&mut self, d: Decimal) {
        self.sep();
        push_decimal_display(&mut self.buf, d);
    }

    /// A date as `YYYY-MM-DD`.
    pub fn date(&mut self, d: NaiveDate) {
        self.sep();
        push_date(&mut self.buf, d);
    }

    /// A month, `YYYY-MM`, as its `Display` writes it.
    pub fn month(&mut self, m: crate::dates::Month) {
        self.sep();
        push_month(&mut self.buf, m);
    }

    /// An empty field.
    pub fn empty(&mut self) {
        self.sep();
    }

    /// Ends the record (CRLF, like every porledger CSV).
    pub fn end(&mut self) {
        self.buf.extend_from_slice(b"\r\n");
        self.fields = 0;
    }
}

/// Whether a field's bytes hold `,`, `"`, CR or LF (it is then quoted). Looked
/// at 16 bytes at a time without stopping early inside a block, which the
/// compiler turns into vector compares: byte by byte, this test was most of
/// the time of [`RowBuf::text`], itself a fifth of writing `tieout.csv`.
#[inline]
fn needs_quotes(b: &[u8]) -> bool {
    #[inline(always)]
    fn special(c: u8) -> bool {
        (c == b',') | (c == b'"') | (c == b'\r') | (c == b'\n')
    }
    let mut blocks = b.chunks_exact(16);
    for block in &mut blocks {
        if block.iter().fold(false, |any, &c| any | special(c)) {
            return true;
        }
    }
    blocks.remainder().iter().any(|&c| special(c))
}

/// `n` in decimal digits: the digits in a buffer, and where they start.
#[inline]
fn uint_digits(mut n: u64) -> ([u8; 20], usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    (tmp, i)
}

/// Appends `n` in decimal digits (also used by `porledger sample`).
#[inline]
pub fn push_uint(buf: &mut Vec<u8>, n: u64) {
    let (tmp, i) = uint_digits(n);
    buf.extend_from_slice(&tmp[i..]);
}

/// [`push_uint`] into a `String` (as `write!(s, "{n}")` does, without the
/// formatting machinery: lists of line numbers in the tie-out's columns).
#[inline]
pub fn push_uint_str(s: &mut String, n: u64) {
    let (tmp, i) = uint_digits(n);
    s.extend(tmp[i..].iter().map(|&d| d as char));
}

/// Appends `d` as `Display` writes it (as `write!(s, "{d}")`, faster for
/// mantissas that fit in a `u64`; a negative zero keeps its sign).
pub fn push_decimal_str(s: &mut String, d: Decimal) {
    use std::fmt::Write as _;
    match decimal_digits(d) {
        Some((tmp, i)) if !d.is_zero() => {
            if d.is_sign_negative() {
                s.push('-');
            }
            s.extend(tmp[i..].iter().map(|&c| c as char));
        }
        _ => {
            let _ = write!(s, "{d}");
        }
    }
}

/// Appends `m` as its `Display` writes it (`YYYY-MM`).
#[inline]
pub fn push_month(buf: &mut Vec<u8>, m: crate::dates::Month) {
    use chrono::Datelike as _;
    use std::io::Write as _;
    let day = m.first_day();
    if (0..=9999).contains(&day.year()) {
        push_date(buf, day);
        buf.truncate(buf.len() - 3);
    } else {
        let _ = write!(buf, "{m}");
    }
}

/// Appends `d` exactly as its `Display` writes it (scale kept, and the sign
/// of a negative zero, which the fast path would drop).
#[inline]
pub fn push_decimal_display(buf: &mut Vec<u8>, d: Decimal) {
    use std::io::Write as _;
    if d.is_zero() || !push_decimal_fast(buf, d) {
        let _ = write!(buf, "{d}");
    }
}

/// Appends `d` as `YYYY-MM-DD` (years 0 to 9999; also used by `porledger sample`).
#[inline]
pub fn push_date(buf: &mut Vec<u8>, d: NaiveDate) {
    use chrono::Datelike;
    let (y, m, dd) = (d.year() as u32, d.month(), d.day());
    let digit = |x: u32| b'0' + (x % 10) as u8;
    buf.extend_from_slice(&[
        digit(y / 1000),
        digit(y / 100),
        digit(y / 10),
        digit(y),
        b'-',
        digit(m / 10),
        digit(m),
        b'-',
        digit(dd / 10),
        digit(dd),
    ]);
}

/// Writes `d` as `Display` would, for mantissas that fit in a `u64` (every
/// ledger amount in practice); returns false, writing nothing, otherwise.
/// `Decimal`'s own formatting was a tenth of the ledger writers' time.
fn push_decimal_fast(buf: &mut Vec<u8>, d: Decimal) -> bool {
    let Some((tmp, i)) = decimal_digits(d) else {
        return false;
    };
    if d.mantissa() < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&tmp[i..]);
    true
}

/// The digits of `|d|` with its decimal point, as `Display` writes them, when
/// its mantissa fits in a `u64`: the digits in a buffer, and where they start.
#[inline]
fn decimal_digits(d: Decimal) -> Option<([u8; 48], usize)> {
    let mut u = u64::try_from(d.mantissa().unsigned_abs()).ok()?;
    let scale = d.scale() as usize;
    let mut tmp = [0u8; 48];
    let mut i = tmp.len();
    let mut digits = 0;
    loop {
        i -= 1;
        tmp[i] = b'0' + (u % 10) as u8;
        u /= 10;
        digits += 1;
        if digits == scale {
            i -= 1;
            tmp[i] = b'.';
        }
        if u == 0 && digits > scale {
            break;
        }
    }
    Some((tmp, i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn columns_are_found_by_name_in_any_order_and_a_missing_one_is_named() {
        let header = csv::StringRecord::from(vec!["b", "extra", "a"]);
        let file = Path::new("out/attainment.csv");
        assert_eq!(
            columns(&header, file, "attainment.csv", ["a", "b"]).unwrap(),
            [2, 0]
        );
        // A column of a later version may be absent, no other.
        assert_eq!(
            columns_or_absent(&header, file, "ledger", ["a", "reverses"], &["reverses"]).unwrap(),
            [Some(2), None]
        );
        assert!(columns_or_absent(&header, file, "ledger", ["mau", "a"], &["reverses"]).is_err());
        let e = columns(&header, file, "attainment.csv", ["a", "mau"]).unwrap_err();
        match e {
            Fatal::Data {
                file,
                line,
                column,
                message,
            } => {
                assert_eq!(file, "out/attainment.csv");
                assert_eq!(line, 1);
                assert_eq!(column.as_deref(), Some("mau"));
                assert_eq!(message, "no such column: not a porledger attainment.csv");
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        /// The fast decimal path writes exactly what `Decimal`'s Display writes.
        /// Texts are quoted as the csv crate quotes them (after the same
        /// neutralising), quotes inside doubled.
        #[test]
        fn texts_are_quoted_as_the_csv_crate_quotes_them(a in "[a-z,\"\r\n =+-]{0,40}", b in any::<String>()) {
            for s in [a, b] {
                let mut rb = RowBuf::default();
                rb.text(&s);
                rb.text("x");
                rb.end();
                let mut w = csv::WriterBuilder::new()
                    .terminator(csv::Terminator::CRLF)
                    .from_writer(Vec::new());
                w.write_record([&*excel_safe(&s), "x"]).unwrap();
                prop_assert_eq!(rb.buf, w.into_inner().unwrap());
            }
        }

        /// Any of the four bytes that make a field quoted is found at any
        /// place of a field of any length (inside a 16-byte block or after
        /// the last one).
        #[test]
        fn a_byte_that_needs_quotes_is_found_anywhere(
            len in 0usize..80,
            at in any::<prop::sample::Index>(),
            c in prop::sample::select(vec![b',', b'"', b'\r', b'\n', b'a', b'\t', b'\'']),
        ) {
            let mut b = vec![b'x'; len];
            if len > 0 {
                b[at.index(len)] = c;
            }
            let naive = b.iter().any(|&c| matches!(c, b',' | b'"' | b'\r' | b'\n'));
            prop_assert_eq!(needs_quotes(&b), naive);
        }

        /// The `String` writers write what `Display` writes.
        #[test]
        fn string_numbers_match_display(n in any::<u64>(), m in any::<i64>(), wide in any::<i128>(), scale in 0u32..=28) {
            let mut s = String::from("x");
            push_uint_str(&mut s, n);
            prop_assert_eq!(s, format!("x{n}"));
            for mantissa in [m as i128, wide % 79_228_162_514_264_337_593_543_950_335, 0] {
                let mut d = Decimal::from_i128_with_scale(mantissa, scale);
                for _ in 0..2 {
                    let mut s = String::from("x");
                    push_decimal_str(&mut s, d);
                    prop_assert_eq!(s, format!("x{d}"));
                    d.set_sign_negative(true);
                }
            }
        }

        #[test]
        fn fast_decimals_match_display(m in any::<i64>(), wide in any::<i128>(), scale in 0u32..=28) {
            for mantissa in [m as i128, wide % 79_228_162_514_264_337_593_543_950_335] {
                let d = Decimal::from_i128_with_scale(mantissa, scale);
                let mut buf = Vec::new();
                if !push_decimal_fast(&mut buf, d) {
                    prop_assert!(mantissa.unsigned_abs() > u64::MAX as u128);
                    continue;
                }
                prop_assert_eq!(String::from_utf8(buf).unwrap(), d.to_string());
            }
        }
    }

    #[test]
    fn numbers_dates_decimals() {
        let mut rb = RowBuf::default();
        rb.num(0);
        rb.num(18446744073709551615);
        rb.date(NaiveDate::from_ymd_opt(2026, 3, 9).unwrap());
        rb.decimal("1.5000".parse().unwrap(), 2);
        rb.decimal("-0.000".parse().unwrap(), 2);
        rb.decimal("0.0123400".parse().unwrap(), 1);
        rb.empty();
        rb.end();
        assert_eq!(
            String::from_utf8(rb.buf).unwrap(),
            "0,18446744073709551615,2026-03-09,1.50,0.00,0.01234,\r\n"
        );
    }

    #[test]
    fn months_are_written_as_display_writes_them() {
        use crate::dates::Month;
        for (y, m) in [
            (2026, 1),
            (2026, 12),
            (1900, 7),
            (9999, 12),
            (10000, 1),
            (262_000, 3),
        ] {
            let Some(day) = NaiveDate::from_ymd_opt(y, m, 1) else {
                continue;
            };
            let month = Month::of(day);
            let mut rb = RowBuf::default();
            rb.month(month);
            assert_eq!(String::from_utf8(rb.buf).unwrap(), month.to_string());
        }
    }
}
