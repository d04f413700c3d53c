//! The generator's CSV record writer.
//!
//! Why not [`crate::render::csv::RowBuf`], the ledger's writer? That one writes
//! porledger's *outputs*: always CRLF, quoting only where needed, and every
//! text value neutralised against spreadsheet formulas. The generator imitates
//! Microsoft's *exports*, whose quoting (every field, or only where needed) and
//! line endings vary from file to file, and whose values must be written as
//! they are. What is the same job is shared: digits and `YYYY-MM-DD` dates are
//! written by [`crate::render::csv::push_uint`] and
//! [`crate::render::csv::push_date`].

use chrono::{Datelike, NaiveDate};

use super::style::{DateStyle, FileStyle};
use crate::render::csv::{push_date, push_uint};

/// Builds one CSV record at a time into a reusable buffer, without allocating
/// per field. Text is quoted when the style says so or when it holds a comma,
/// a quote or a line break; numbers and dates are written digit by digit.
pub(super) struct RowBuf {
    pub(super) buf: Vec<u8>,
    quote_all: bool,
    first: bool,
    eol: &'static [u8],
}

impl RowBuf {
    pub(super) fn new(style: &FileStyle) -> RowBuf {
        RowBuf {
            buf: Vec::with_capacity(2048),
            quote_all: style.quote_all,
            first: true,
            eol: if style.crlf { b"\r\n" } else { b"\n" },
        }
    }

    fn start_field(&mut self) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
    }

    pub(super) fn text(&mut self, s: &str) {
        self.start_field();
        let b = s.as_bytes();
        if self.quote_all || b.iter().any(|&c| matches!(c, b',' | b'"' | b'\n' | b'\r')) {
            self.buf.push(b'"');
            for part in b.split_inclusive(|&c| c == b'"') {
                self.buf.extend_from_slice(part);
                if part.last() == Some(&b'"') {
                    self.buf.push(b'"');
                }
            }
            self.buf.push(b'"');
        } else {
            self.buf.extend_from_slice(b);
        }
    }

    /// A value known to need no quoting (digits, dates, IDs), quoted only
    /// when every field is.
    pub(super) fn plain(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.start_field();
        if self.quote_all {
            self.buf.push(b'"');
        }
        write(&mut self.buf);
        if self.quote_all {
            self.buf.push(b'"');
        }
    }

    pub(super) fn ascii(&mut self, b: &[u8]) {
        self.plain(|o| o.extend_from_slice(b));
    }

    pub(super) fn int(&mut self, n: i64) {
        self.plain(|o| push_int(o, n));
    }

    pub(super) fn cents(&mut self, c: i64) {
        self.plain(|o| push_cents(o, c));
    }

    pub(super) fn date(&mut self, d: NaiveDate, style: DateStyle) {
        self.plain(|o| push_styled_date(o, d, style));
    }

    pub(super) fn end(&mut self) {
        self.buf.extend_from_slice(self.eol);
        self.first = true;
    }
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_uint(out, n.unsigned_abs());
}

/// `-1234` cents -> `-12.34`.
fn push_cents(out: &mut Vec<u8>, c: i64) {
    if c < 0 {
        out.push(b'-');
    }
    let a = c.unsigned_abs();
    push_uint(out, a / 100);
    out.push(b'.');
    out.push(b'0' + (a % 100 / 10) as u8);
    out.push(b'0' + (a % 10) as u8);
}

/// `d` as a file of `style` writes it (years have four digits here).
fn push_styled_date(out: &mut Vec<u8>, d: NaiveDate, style: DateStyle) {
    match style {
        DateStyle::Slash | DateStyle::SlashTime => {
            push_uint(out, d.month() as u64);
            out.push(b'/');
            push_uint(out, d.day() as u64);
            out.push(b'/');
            push_uint(out, d.year() as u64);
            if style == DateStyle::SlashTime {
                out.extend_from_slice(b" 0:00:00");
            }
        }
        DateStyle::Iso => {
            push_date(out, d);
            out.extend_from_slice(b"T00:00:00Z");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_helpers() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let mut v = Vec::new();
        push_cents(&mut v, -1234);
        v.push(b' ');
        push_cents(&mut v, 5);
        v.push(b' ');
        push_int(&mut v, -7);
        v.push(b' ');
        push_styled_date(&mut v, day(2026, 10, 1), DateStyle::SlashTime);
        v.push(b' ');
        push_styled_date(&mut v, day(2024, 2, 29), DateStyle::Iso);
        v.push(b' ');
        push_styled_date(&mut v, day(2024, 12, 9), DateStyle::Slash);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "-12.34 0.05 -7 10/1/2026 0:00:00 2024-02-29T00:00:00Z 12/9/2024"
        );
    }

    #[test]
    fn quoting_styles() {
        let mut w = RowBuf::new(&FileStyle::of_file(0));
        w.text("a,b");
        w.text("say \"hi\"");
        w.text("x");
        w.int(-3);
        w.end();
        assert_eq!(w.buf, b"\"a,b\",\"say \"\"hi\"\"\",x,-3\r\n");
        // File 1: camelCase API export, every field quoted, LF.
        let mut w = RowBuf::new(&FileStyle::of_file(1));
        w.text("x");
        w.cents(150);
        w.end();
        assert_eq!(w.buf, b"\"x\",\"1.50\"\n");
    }
}
