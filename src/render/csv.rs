//! CSV outputs. Every text value goes through [`excel_safe`]; amounts are plain
//! decimals with `.` as separator, never in scientific notation.

use std::io::Write;
use std::path::Path;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{excel_safe, sanitize_file_name};
use crate::error::Fatal;
use crate::money::{format_exact, format_exact_dp, Currency};
use crate::statements::{CurrencyTotal, CustomerStatement, PartnerStatement, StatementSet};

// The row files of a run (ledger, not-eligible, rejects) are defined in
// [`crate::ledger`]; their headers stay reachable here.
pub use crate::ledger::{LEDGER_HEADER, NOT_ELIGIBLE_HEADER, REJECTS_HEADER};

pub const SUMMARY_HEADER: [&str; 7] = [
    "partner_id",
    "partner_name",
    "program_id",
    "currency",
    "lines",
    "basis_amount",
    "accrual_amount",
];

/// A CSV writer with the settings of every porledger output.
pub fn writer<W: Write>(w: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .flexible(true)
        .from_writer(w)
}

/// Writes a record of text values, neutralising formulas.
pub fn row<W: Write>(w: &mut csv::Writer<W>, fields: &[&str]) -> csv::Result<()> {
    for f in fields {
        w.write_field(excel_safe(f).as_bytes())?;
    }
    w.write_record(None::<&[u8]>)
}

/// A rate or share: normalised, at least one decimal (`0.04`, `1.0`).
pub fn ratio(d: Decimal) -> String {
    format_exact_dp(d, 1)
}

/// A rounded amount (already at the currency's minor unit).
pub fn amount(d: Decimal) -> String {
    d.to_string()
}

fn date(d: Option<NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> Fatal + '_ {
    move |e| Fatal::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Writes `summary.csv`.
pub fn write_summary(path: &Path, set: &StatementSet) -> Result<(), Fatal> {
    let err = csv_err(path);
    let f = std::fs::File::create(path).map_err(|e| Fatal::io(path, e))?;
    let mut w = writer(std::io::BufWriter::new(f));
    row(&mut w, &SUMMARY_HEADER).map_err(&err)?;
    for s in &set.summary {
        row(
            &mut w,
            &[
                &s.partner_id,
                &s.partner_name,
                &s.program_id,
                s.currency.as_str(),
                &s.lines.to_string(),
                &format_exact(s.basis_amount, s.currency),
                &amount(s.accrual_amount),
            ],
        )
        .map_err(&err)?;
    }
    w.flush().map_err(|e| Fatal::io(path, e))
}

fn write_totals(w: &mut Sections, totals: &[CurrencyTotal]) -> csv::Result<()> {
    let converted = totals.iter().any(|t| t.converted.is_some());
    if !converted {
        w.row(&["total", "currency", "basis_amount", "accrual_amount"])?;
    } else {
        w.row(&[
            "total",
            "currency",
            "basis_amount",
            "accrual_amount",
            "reporting_currency",
            "fx_rate",
            "fx_rate_date",
            "converted_amount",
        ])?;
    }
    for t in totals {
        let mut fields = vec![
            "total".to_string(),
            t.currency.to_string(),
            format_exact(t.basis, t.currency),
            amount(t.amount),
        ];
        if let Some(c) = &t.converted {
            fields.push(c.currency.to_string());
            fields.push(ratio(c.rate));
            fields.push(date(c.rate_date));
            fields.push(amount(c.amount));
        }
        let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
        w.row(&refs)?;
    }
    Ok(())
}

/// A CSV document of several sections separated by truly empty lines (a csv
/// writer would print an empty record as `""`).
struct Sections {
    done: Vec<u8>,
    w: csv::Writer<Vec<u8>>,
}

impl Sections {
    fn new() -> Sections {
        Sections {
            done: Vec::new(),
            w: writer(Vec::new()),
        }
    }

    fn row(&mut self, fields: &[&str]) -> csv::Result<()> {
        row(&mut self.w, fields)
    }

    fn blank(&mut self) -> csv::Result<()> {
        let w = std::mem::replace(&mut self.w, writer(Vec::new()));
        self.done.extend(
            w.into_inner()
                .map_err(|e| csv::Error::from(e.into_error()))?,
        );
        self.done.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn finish(mut self) -> csv::Result<Vec<u8>> {
        self.done.extend(
            self.w
                .into_inner()
                .map_err(|e| csv::Error::from(e.into_error()))?,
        );
        Ok(self.done)
    }
}

/// The end of a statement's header block: period, statement date, rounding.
fn period_block(w: &mut Sections, set: &StatementSet) -> csv::Result<()> {
    w.row(&["period", &set.period.label()])?;
    w.row(&["statement_date", &set.period.last_day().to_string()])?;
    w.row(&["rounding", set.rounding.as_str()])?;
    w.blank()
}

/// The partner statement as CSV: a header block, one line per customer, program
/// and currency, then totals per currency.
pub fn partner_statement_csv(p: &PartnerStatement, set: &StatementSet) -> csv::Result<Vec<u8>> {
    let mut w = Sections::new();
    w.row(&["porledger partner statement"])?;
    w.row(&["partner_id", &p.partner_id])?;
    w.row(&["partner_name", &p.partner_name])?;
    period_block(&mut w, set)?;
    w.row(&[
        "customer_id",
        "customer_name",
        "program_id",
        "program_name",
        "currency",
        "lines",
        "basis_amount",
        "rate",
        "accrual_exact",
        "accrual_amount",
    ])?;
    for l in &p.lines {
        w.row(&[
            &l.customer_id,
            &l.customer_name,
            &l.program_id,
            &l.program_name,
            l.currency.as_str(),
            &l.lines.to_string(),
            &format_exact(l.basis, l.currency),
            &l.rate.map(ratio).unwrap_or_else(|| "various".into()),
            &format_exact(l.accrual_exact, l.currency),
            &amount(l.amount),
        ])?;
    }
    w.blank()?;
    write_totals(&mut w, &p.totals)?;
    if let Some((c, total)) = &p.reporting_total {
        w.row(&["total_converted", c.as_str(), "", &amount(*total)])?;
    }
    let mut out = w.finish()?;
    // Usage attainment and tier-rate sections (empty without --usage).
    out.extend(super::attainment::statement_sections(p)?);
    Ok(out)
}

/// The customer transparency statement as CSV: what this partner earned from
/// this customer, by program, with the designations, basis, rate and share.
pub fn customer_statement_csv(
    p: &PartnerStatement,
    c: &CustomerStatement,
    set: &StatementSet,
) -> csv::Result<Vec<u8>> {
    let mut w = Sections::new();
    w.row(&["porledger customer transparency statement"])?;
    w.row(&["customer_id", &c.customer_id])?;
    w.row(&["customer_name", &c.customer_name])?;
    w.row(&["partner_id", &p.partner_id])?;
    w.row(&["partner_name", &p.partner_name])?;
    period_block(&mut w, set)?;
    w.row(&[
        "designation",
        "association",
        "subscription_id",
        "workload",
        "share",
        "valid_from",
        "valid_to",
    ])?;
    for d in &c.designations {
        w.row(&[
            "designation",
            d.association.as_str(),
            d.subscription_id.as_deref().unwrap_or("(all)"),
            &d.workload,
            &d.share.map(ratio).unwrap_or_else(|| "equal split".into()),
            &date(d.valid_from),
            &date(d.valid_to),
        ])?;
    }
    if c.designations.is_empty() {
        w.row(&[
            "designation",
            "(none: credit from the billing file, reseller or Tier 1)",
        ])?;
    }
    w.blank()?;
    w.row(&[
        "program_id",
        "program_name",
        "association",
        "subscription_id",
        "currency",
        "lines",
        "basis_amount",
        "rate",
        "share",
        "accrual_exact",
    ])?;
    for d in &c.details {
        w.row(&[
            &d.program_id,
            &d.program_name,
            d.association.as_str(),
            &d.subscription_id,
            d.currency.as_str(),
            &d.lines.to_string(),
            &format_exact(d.basis, d.currency),
            &ratio(d.rate),
            &ratio(d.share),
            &format_exact(d.accrual_exact, d.currency),
        ])?;
    }
    w.blank()?;
    w.row(&[
        "program_id",
        "program_name",
        "currency",
        "lines",
        "basis_amount",
        "accrual_exact",
        "accrual_amount",
    ])?;
    for l in &c.lines {
        w.row(&[
            &l.program_id,
            &l.program_name,
            l.currency.as_str(),
            &l.lines.to_string(),
            &format_exact(l.basis, l.currency),
            &format_exact(l.accrual_exact, l.currency),
            &amount(l.amount),
        ])?;
    }
    w.blank()?;
    write_totals(&mut w, &c.totals)?;
    w.finish()
}

/// Writes `partners/<id>/statement.csv` and `partners/<id>/customers/<cid>.csv`
/// for every partner under `dir`.
pub fn write_statements(
    dir: &Path,
    set: &StatementSet,
    files: &crate::render::publish::Written,
) -> Result<(), Fatal> {
    use rayon::prelude::*;
    set.partners.par_iter().try_for_each(|p| {
        let pdir = dir.join("partners").join(sanitize_file_name(&p.partner_id));
        let cdir = pdir.join("customers");
        std::fs::create_dir_all(&cdir).map_err(|e| Fatal::io(&cdir, e))?;
        let path = pdir.join("statement.csv");
        let bytes = partner_statement_csv(p, set).map_err(csv_err(&path))?;
        crate::render::publish::write_file(files, &path, &bytes)?;
        for c in &p.customers {
            let path = cdir.join(format!("{}.csv", sanitize_file_name(&c.customer_id)));
            let bytes = customer_statement_csv(p, c, set).map_err(csv_err(&path))?;
            crate::render::publish::write_file(files, &path, &bytes)?;
        }
        Ok(())
    })
}

/// Formats a currency-aware exact amount (re-exported for the pipeline).
pub fn exact(d: Decimal, c: Currency) -> String {
    format_exact(d, c)
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
        if b.iter().any(|&c| matches!(c, b',' | b'"' | b'\r' | b'\n')) {
            self.buf.push(b'"');
            for &c in b {
                if c == b'"' {
                    self.buf.push(b'"');
                }
                self.buf.push(c);
            }
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

    /// An exact decimal, with at least `min_dp` decimals (see [`format_exact_dp`]).
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

    /// A date as `YYYY-MM-DD`.
    pub fn date(&mut self, d: NaiveDate) {
        self.sep();
        push_date(&mut self.buf, d);
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

/// Appends `n` in decimal digits (also used by `porledger sample`).
#[inline]
pub fn push_uint(buf: &mut Vec<u8>, mut n: u64) {
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
    buf.extend_from_slice(&tmp[i..]);
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
    let m = d.mantissa();
    let Ok(mut u) = u64::try_from(m.unsigned_abs()) else {
        return false;
    };
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
    if m < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&tmp[i..]);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// RowBuf writes exactly what the csv crate writes for the same fields.
        #[test]
        fn rowbuf_matches_the_csv_crate(fields in proptest::collection::vec("[a-z,\"\r\n =@+-.0-9ä€]{0,8}", 1..6)) {
            let mut rb = RowBuf::default();
            for f in &fields {
                rb.text(f);
            }
            rb.end();
            let mut w = writer(Vec::new());
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            row(&mut w, &refs).unwrap();
            let expected = w.into_inner().unwrap();
            // The csv crate quotes a lone empty field ("") to keep the record.
            if !(fields.len() == 1 && fields[0].is_empty()) {
                prop_assert_eq!(String::from_utf8_lossy(&rb.buf), String::from_utf8_lossy(&expected));
            }
        }
    }

    proptest! {
        /// The fast decimal path writes exactly what `Decimal`'s Display writes.
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
}
