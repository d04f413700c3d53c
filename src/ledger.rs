//! The row files of a run, defined once: `ledger.csv` (one row per accrual),
//! `not-eligible.csv` (one row per line that earned nothing) and `rejects.csv`
//! (one row per unreadable line).
//!
//! - [`LEDGER_COLUMNS`] names and types the ledger's columns, in file order;
//!   the CSV header, the Parquet schema ([`crate::render::parquet`]) and the
//!   reader all come from it.
//! - [`write_ledger_row`], [`write_not_eligible_row`] and [`write_reject_row`]
//!   format plain row structs into a reusable [`RowBuf`] (no allocation per
//!   row: the billing path writes millions of them). Billing and usage
//!   accruals go through the same writers.
//! - [`LedgerReader`] reads a ledger back **by column name** (used by
//!   `explain`): columns may come in any order, a missing one is an error
//!   naming the file and the column.
//!
//! # Escaping of text values
//!
//! Every text value is written through [`crate::csv_text::excel_safe`], so that a
//! spreadsheet does not run a value such as `-P1` or `=1+1` as a formula: it is
//! stored as `'-P1`. That escape is for display only. The reader undoes it
//! ([`crate::csv_text::excel_unescape`]), so a key read back (a partner,
//! customer or program ID) is the value that was written: `explain
//! --partner=-P1` finds the rows stored as `'-P1`. Values that are not escaped
//! (every normal ID) are written and read unchanged, byte for byte. A text
//! that itself starts with `'`s before a formula character gets one more
//! (`'-P1` is written `''-P1`), so every value survives the round trip and no
//! two keys are read back as one.

use std::io::Read;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::csv_text::{excel_unescape, record_text, within, RowBuf};
use crate::dates::Month;
use crate::error::Fatal;
use crate::money::Currency;

/// How a ledger column is typed (in `ledger.parquet`; `ledger.csv` is text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    /// Text (an ID, a name, a currency code).
    Text,
    /// A date, `YYYY-MM-DD`.
    Date,
    /// An integer, empty (null) when it does not apply.
    Int,
    /// An exact decimal.
    Decimal,
}

/// One column of the ledger.
#[derive(Clone, Copy, Debug)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnKind,
}

const fn col(name: &'static str, kind: ColumnKind) -> Column {
    Column { name, kind }
}

/// A ledger column, by name; `LedgerColumn::X as usize` is its position in
/// [`LEDGER_COLUMNS`] (and in `ledger.csv`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LedgerColumn {
    PartnerId,
    CustomerId,
    ProgramId,
    Association,
    SubscriptionId,
    ChargeDate,
    AccrualMonth,
    SourceFile,
    SourceLine,
    BasisAmount,
    Rate,
    Share,
    AccrualAmount,
    Currency,
    DesignationLine,
    CreditedDays,
    ChargeDays,
    /// A reversal row: the closed accrual it reverses, `PERIOD vVERSION
    /// FILE:LINE`; empty for every other row. Optional when reading (a
    /// ledger written before it reads as all empty).
    Reverses,
    /// The billing line's invoice number; empty for usage rows and billing
    /// files without one. Optional when reading, like `reverses`.
    InvoiceNumber,
    /// The billing line's product (`ProductId`; `OfferId` in legacy
    /// license-based files, `SkuId` in FOCUS); empty for usage rows.
    /// Optional when reading, like `reverses`.
    ProductId,
}

/// The ledger's columns, in the order of `ledger.csv`.
pub const LEDGER_COLUMNS: [Column; 20] = {
    use ColumnKind::*;
    [
        col("partner_id", Text),
        col("customer_id", Text),
        col("program_id", Text),
        col("association", Text),
        col("subscription_id", Text),
        col("charge_date", Date),
        col("accrual_month", Text),
        col("source_file", Text),
        col("source_line", Int),
        col("basis_amount", Decimal),
        col("rate", Decimal),
        col("share", Decimal),
        col("accrual_amount", Decimal),
        col("currency", Text),
        col("designation_line", Int),
        col("credited_days", Int),
        col("charge_days", Int),
        col("reverses", Text),
        col("invoice_number", Text),
        col("product_id", Text),
    ]
};

const fn names<const N: usize>(cols: &[Column; N]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < N {
        out[i] = cols[i].name;
        i += 1;
    }
    out
}

/// The header of `ledger.csv`.
pub const LEDGER_HEADER: [&str; 20] = names(&LEDGER_COLUMNS);

/// The positions of the ledger columns of `kind`, in file order; `N` must be
/// their number (checked at compile time when used in a const).
pub const fn columns_of<const N: usize>(kind: ColumnKind) -> [usize; N] {
    let mut out = [0; N];
    let mut n = 0;
    let mut i = 0;
    while i < LEDGER_COLUMNS.len() {
        if LEDGER_COLUMNS[i].kind as u8 == kind as u8 {
            assert!(n < N, "more ledger columns of this kind than N");
            out[n] = i;
            n += 1;
        }
        i += 1;
    }
    assert!(n == N, "fewer ledger columns of this kind than N");
    out
}

/// Positions of the decimal columns (`Decimal(38, 24)` in `ledger.parquet`).
pub const DECIMAL_COLUMNS: [usize; 4] = columns_of(ColumnKind::Decimal);
/// Positions of the integer columns (`Int64`, null when empty, in `ledger.parquet`).
pub const INT_COLUMNS: [usize; 4] = columns_of(ColumnKind::Int);
/// Position of the date column (`Date` in `ledger.parquet`).
pub const DATE_COLUMN: usize = columns_of::<1>(ColumnKind::Date)[0];

/// The header of `not-eligible.csv`.
pub const NOT_ELIGIBLE_HEADER: [&str; 9] = [
    "source_file",
    "source_line",
    "customer_id",
    "subscription_id",
    "charge_date",
    "basis_amount",
    "currency",
    "reason",
    "detail",
];

/// The header of `rejects.csv`.
pub const REJECTS_HEADER: [&str; 5] = ["source_file", "source_line", "column", "value", "reason"];

/// One ledger row to write: one accrual of one partner for one program.
/// Plain values, not tied to billing or usage types.
#[derive(Clone, Copy, Debug)]
pub struct LedgerRow<'a> {
    pub partner_id: &'a str,
    pub customer_id: &'a str,
    pub program_id: &'a str,
    pub association: &'a str,
    /// A subscription ID (billing) or the workload (usage).
    pub subscription_id: &'a str,
    pub charge_date: NaiveDate,
    /// The month of the charge days the accrual pays for (`YYYY-MM`).
    pub accrual_month: Month,
    pub source_file: &'a str,
    pub source_line: u64,
    pub basis_amount: Decimal,
    /// Fewest decimals written for `basis_amount`: the currency's minor unit
    /// for money, 0 for a count (monthly active users).
    pub basis_min_dp: u32,
    pub rate: Decimal,
    pub share: Decimal,
    /// Written with at least the currency's minor unit of decimals.
    pub accrual_amount: Decimal,
    pub currency: Currency,
    pub designation_line: Option<u64>,
    pub credited_days: Option<u64>,
    pub charge_days: Option<u64>,
    /// The closed accrual a reversal row reverses (`PERIOD vVERSION FILE:LINE`).
    pub reverses: Option<&'a str>,
    /// The billing line's invoice number and product; empty for usage.
    pub invoice_number: &'a str,
    pub product_id: &'a str,
}

/// Appends one `ledger.csv` record to `w` (columns of [`LEDGER_COLUMNS`]).
#[inline]
pub fn write_ledger_row(w: &mut RowBuf, r: &LedgerRow) {
    w.text(r.partner_id);
    w.text(r.customer_id);
    w.text(r.program_id);
    w.text(r.association);
    w.text(r.subscription_id);
    w.date(r.charge_date);
    w.month(r.accrual_month);
    w.text(r.source_file);
    w.num(r.source_line);
    w.decimal(r.basis_amount, r.basis_min_dp);
    w.decimal(r.rate, 1);
    w.decimal(r.share, 1);
    w.decimal(r.accrual_amount, r.currency.minor_units());
    w.text(r.currency.as_str());
    opt_num(w, r.designation_line);
    opt_num(w, r.credited_days);
    opt_num(w, r.charge_days);
    match r.reverses {
        Some(t) => w.text(t),
        None => w.empty(),
    }
    w.text(r.invoice_number);
    w.text(r.product_id);
    w.end();
}

#[inline]
fn opt_num(w: &mut RowBuf, n: Option<u64>) {
    match n {
        Some(n) => w.num(n),
        None => w.empty(),
    }
}

/// One `not-eligible.csv` row: a line that earned nothing, and why.
#[derive(Clone, Copy, Debug)]
pub struct NotEligibleRow<'a> {
    pub source_file: &'a str,
    pub source_line: u64,
    pub customer_id: &'a str,
    /// A subscription ID (billing) or the workloads (usage).
    pub subscription_id: &'a str,
    pub charge_date: NaiveDate,
    pub basis_amount: Decimal,
    /// Fewest decimals written for `basis_amount` (see [`LedgerRow`]).
    pub basis_min_dp: u32,
    /// Empty for usage records (a count, not money).
    pub currency: Option<Currency>,
    pub reason: &'a str,
    pub detail: &'a str,
}

/// Appends one `not-eligible.csv` record to `w` (columns of [`NOT_ELIGIBLE_HEADER`]).
#[inline]
pub fn write_not_eligible_row(w: &mut RowBuf, r: &NotEligibleRow) {
    w.text(r.source_file);
    w.num(r.source_line);
    w.text(r.customer_id);
    w.text(r.subscription_id);
    w.date(r.charge_date);
    w.decimal(r.basis_amount, r.basis_min_dp);
    match &r.currency {
        Some(c) => w.text(c.as_str()),
        None => w.empty(),
    }
    w.text(r.reason);
    w.text(r.detail);
    w.end();
}

/// One `rejects.csv` row: a line that could not be read.
#[derive(Clone, Copy, Debug)]
pub struct RejectRow<'a> {
    pub source_file: &'a str,
    pub source_line: u64,
    pub column: &'a str,
    pub value: &'a str,
    pub reason: &'a str,
}

/// Appends one `rejects.csv` record to `w` (columns of [`REJECTS_HEADER`]).
#[inline]
pub fn write_reject_row(w: &mut RowBuf, r: &RejectRow) {
    w.text(r.source_file);
    w.num(r.source_line);
    w.text(r.column);
    w.text(r.value);
    w.text(r.reason);
    w.end();
}

/// A ledger row read back from `ledger.csv`: text as written (unescaped, see
/// the module documentation), amounts and currency parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerRecord {
    pub partner_id: String,
    pub customer_id: String,
    pub program_id: String,
    pub association: String,
    pub subscription_id: String,
    pub charge_date: String,
    pub accrual_month: String,
    pub source_file: String,
    pub source_line: String,
    pub basis: Decimal,
    pub rate: String,
    pub share: String,
    pub amount: Decimal,
    pub currency: Currency,
    pub designation_line: String,
    pub credited_days: String,
    pub charge_days: String,
    /// Empty unless a reversal row.
    pub reverses: String,
    /// Empty for usage rows and in a ledger written before these columns.
    pub invoice_number: String,
    pub product_id: String,
}

/// Reads `ledger.csv` by column name. Records are cut by `simd-csv` (the
/// billing reader's parser; the `csv` crate's took ~4.5 % of a tie-out's CPU
/// for the same bytes, three times as much), and checked as UTF-8 once per row.
pub struct LedgerReader<R> {
    rdr: simd_csv::Reader<R>,
    file: String,
    /// Position in the file of each column of [`LEDGER_COLUMNS`].
    pos: [usize; LEDGER_COLUMNS.len()],
    rec: simd_csv::ByteRecord,
    /// The file line the next record starts on.
    next_line: u64,
    /// The header as read (for columns other readers look up by name).
    header: csv::StringRecord,
}

impl<R: Read> LedgerReader<R> {
    /// Reads the header of `input` (named `file` in errors) and finds every
    /// ledger column in it, in any order; extra columns are ignored.
    pub fn new(file: &str, input: R) -> Result<Self, Fatal> {
        let mut rdr = simd_csv::ReaderBuilder::with_capacity(1 << 20).from_reader(input);
        let at_header = |message: String| Fatal::Data {
            file: file.to_string(),
            line: 1,
            column: None,
            message,
        };
        let raw = rdr.byte_headers().map_err(|e| at_header(e.to_string()))?;
        let mut names = Vec::with_capacity(raw.len());
        for name in raw.iter() {
            names.push(
                std::str::from_utf8(name)
                    .map_err(|_| at_header("the header is not UTF-8 text".into()))?,
            );
        }
        let header = csv::StringRecord::from(names);
        // A ledger from before reversals has no `reverses`: no row reverses
        // anything; one from before invoice and product has neither.
        let pos = crate::csv_text::columns_or_absent(
            &header,
            std::path::Path::new(file),
            "ledger",
            LEDGER_COLUMNS.map(|c| c.name),
            &[
                LEDGER_COLUMNS[LedgerColumn::Reverses as usize].name,
                LEDGER_COLUMNS[LedgerColumn::InvoiceNumber as usize].name,
                LEDGER_COLUMNS[LedgerColumn::ProductId as usize].name,
            ],
        )?
        .map(|p| p.unwrap_or(usize::MAX));
        Ok(LedgerReader {
            rdr,
            file: file.to_string(),
            pos,
            rec: simd_csv::ByteRecord::new(),
            next_line: 2,
            header,
        })
    }

    /// The underlying reader (after the last row: everything was read).
    pub fn get_ref(&self) -> &R {
        self.rdr.get_ref()
    }

    /// The position of a column that is not one of [`LEDGER_COLUMNS`] (or
    /// not in every ledger version), by name; read with [`LedgerLine::field`].
    pub fn position_of(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// The next row, or `None` at the end of the file.
    pub fn next_row(&mut self) -> Result<Option<LedgerLine<'_>>, Fatal> {
        let line = self.next_line;
        let at_line = |message: String| Fatal::Data {
            file: self.file.clone(),
            line,
            column: None,
            message,
        };
        let more = self
            .rdr
            .read_byte_record(&mut self.rec)
            .map_err(|e| at_line(e.to_string()))?;
        if !more {
            return Ok(None);
        }
        // Every field UTF-8 text: the row's bytes checked once, and each
        // field a whole piece of that text (a row of valid text may still
        // split a character between two fields).
        let whole = record_text(&self.rec);
        let Some(whole) = whole else {
            let bad = self
                .rec
                .iter()
                .position(|f| std::str::from_utf8(f).is_err());
            return Err(Fatal::Data {
                file: self.file.clone(),
                line,
                column: bad.map(|i| self.header.get(i).unwrap_or("").to_string()),
                message: "not UTF-8 text".into(),
            });
        };
        // A record takes one line plus one per newline inside its values
        // (the fields lie one after another in one buffer: one count).
        self.next_line += 1 + bytecount::count(self.rec.as_slice(), b'\n') as u64;
        Ok(Some(LedgerLine {
            file: &self.file,
            pos: &self.pos,
            rec: &self.rec,
            whole,
            line,
        }))
    }
}

/// One row of a ledger being read: fields by column, unescaped.
pub struct LedgerLine<'r> {
    file: &'r str,
    pos: &'r [usize; LEDGER_COLUMNS.len()],
    rec: &'r simd_csv::ByteRecord,
    /// The row's fields, one after another, as text (checked when read).
    whole: &'r str,
    line: u64,
}

impl<'r> LedgerLine<'r> {
    /// The text of field `i` (a piece of the row's text), or "" past the
    /// row's end.
    fn text(&self, i: usize) -> &'r str {
        self.rec
            .get(i)
            .and_then(|f| within(self.whole, f))
            .unwrap_or("")
    }

    /// The value of `c`, as it was written (display escape undone).
    pub fn get(&self, c: LedgerColumn) -> &'r str {
        excel_unescape(self.text(self.pos[c as usize]))
    }

    /// The value at position `i` (see [`LedgerReader::position_of`]),
    /// unescaped; empty when the row is shorter.
    pub fn field(&self, i: usize) -> &'r str {
        excel_unescape(self.text(i))
    }

    /// The row's line number in the file.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The whole row, with amounts and currency parsed.
    pub fn record(&self) -> Result<LedgerRecord, Fatal> {
        use LedgerColumn as C;
        let g = |c: LedgerColumn| self.get(c).to_string();
        let bad = |c: LedgerColumn| Fatal::Data {
            file: self.file.to_string(),
            line: self.line(),
            column: Some(LEDGER_COLUMNS[c as usize].name.to_string()),
            message: format!("'{}' is not readable", self.get(c)),
        };
        Ok(LedgerRecord {
            partner_id: g(C::PartnerId),
            customer_id: g(C::CustomerId),
            program_id: g(C::ProgramId),
            association: g(C::Association),
            subscription_id: g(C::SubscriptionId),
            charge_date: g(C::ChargeDate),
            accrual_month: g(C::AccrualMonth),
            source_file: g(C::SourceFile),
            source_line: g(C::SourceLine),
            basis: self
                .get(C::BasisAmount)
                .parse()
                .map_err(|_| bad(C::BasisAmount))?,
            rate: g(C::Rate),
            share: g(C::Share),
            amount: self
                .get(C::AccrualAmount)
                .parse()
                .map_err(|_| bad(C::AccrualAmount))?,
            currency: Currency::parse(self.get(C::Currency)).ok_or_else(|| bad(C::Currency))?,
            designation_line: g(C::DesignationLine),
            credited_days: g(C::CreditedDays),
            charge_days: g(C::ChargeDays),
            reverses: g(C::Reverses),
            invoice_number: g(C::InvoiceNumber),
            product_id: g(C::ProductId),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn header() -> Vec<u8> {
        let mut w = RowBuf::default();
        for h in LEDGER_HEADER {
            w.text(h);
        }
        w.end();
        w.buf
    }

    fn rows() -> Vec<LedgerRow<'static>> {
        let base = LedgerRow {
            partner_id: "500275",
            customer_id: "c1",
            program_id: "csp-core",
            association: "PartnerOfRecord",
            subscription_id: "s1",
            charge_date: NaiveDate::from_ymd_opt(2026, 10, 3).unwrap(),
            accrual_month: Month::from_ym(2026, 10),
            source_file: "billing/a.csv",
            source_line: 12,
            basis_amount: d("100.5"),
            basis_min_dp: 2,
            rate: d("0.04"),
            share: d("1"),
            accrual_amount: d("4.02"),
            currency: eur(),
            designation_line: Some(7),
            credited_days: Some(10),
            charge_days: Some(31),
            reverses: None,
            invoice_number: "G012345678",
            product_id: "CFQ7TTC0LF8Q",
        };
        vec![
            base,
            LedgerRow {
                partner_id: "-P1",
                customer_id: "a, \"quoted\"\r\nmulti-line",
                program_id: "=SUM(A1)",
                subscription_id: "",
                source_file: "dir/b,c.csv",
                basis_amount: d("-3"),
                basis_min_dp: 0,
                designation_line: None,
                credited_days: None,
                charge_days: None,
                reverses: Some("2026-10 v1 billing/oct.csv:7"),
                invoice_number: "",
                ..base
            },
        ]
    }

    fn written(rows: &[LedgerRow]) -> Vec<u8> {
        let mut w = RowBuf::with_buffer(header());
        for r in rows {
            write_ledger_row(&mut w, r);
        }
        w.buf
    }

    fn read_all(file: &[u8]) -> Result<Vec<LedgerRecord>, Fatal> {
        let mut rdr = LedgerReader::new("ledger.csv", file)?;
        let mut out = Vec::new();
        while let Some(l) = rdr.next_row()? {
            out.push(l.record()?);
        }
        Ok(out)
    }

    fn opt(n: Option<u64>) -> String {
        n.map(|n| n.to_string()).unwrap_or_default()
    }

    #[test]
    fn rows_read_back_field_by_field() {
        let rows = rows();
        let back = read_all(&written(&rows)).unwrap();
        assert_eq!(back.len(), rows.len());
        for (r, b) in rows.iter().zip(&back) {
            assert_eq!(b.partner_id, r.partner_id);
            assert_eq!(b.customer_id, r.customer_id);
            assert_eq!(b.program_id, r.program_id);
            assert_eq!(b.association, r.association);
            assert_eq!(b.subscription_id, r.subscription_id);
            assert_eq!(b.charge_date, r.charge_date.to_string());
            assert_eq!(b.accrual_month, r.accrual_month.to_string());
            assert_eq!(b.source_file, r.source_file);
            assert_eq!(b.source_line, r.source_line.to_string());
            assert_eq!(b.basis, r.basis_amount);
            assert_eq!(b.rate, "0.04");
            assert_eq!(b.share, "1.0");
            assert_eq!(b.amount, r.accrual_amount);
            assert_eq!(b.currency, r.currency);
            assert_eq!(b.designation_line, opt(r.designation_line));
            assert_eq!(b.credited_days, opt(r.credited_days));
            assert_eq!(b.charge_days, opt(r.charge_days));
            assert_eq!(b.reverses, r.reverses.unwrap_or(""));
            assert_eq!(b.invoice_number, r.invoice_number);
            assert_eq!(b.product_id, r.product_id);
        }
    }

    #[test]
    fn the_bytes_are_those_of_the_csv_files() {
        let text = String::from_utf8(written(&rows())).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], LEDGER_HEADER.join(","));
        assert_eq!(
            lines[1],
            "500275,c1,csp-core,PartnerOfRecord,s1,2026-10-03,2026-10,billing/a.csv,12,\
             100.50,0.04,1.0,4.02,EUR,7,10,31,,G012345678,CFQ7TTC0LF8Q"
        );
        // Formula-like text is escaped for spreadsheets, quoted when needed.
        assert!(text.contains(
            "'-P1,\"a, \"\"quoted\"\"\r\nmulti-line\",'=SUM(A1),PartnerOfRecord,,\
             2026-10-03,2026-10,\"dir/b,c.csv\",12,-3,0.04,1.0,4.02,EUR,,,,2026-10 v1 billing/oct.csv:7,,\
             CFQ7TTC0LF8Q\r\n"
        ));
    }

    #[test]
    fn a_ledger_without_the_reverses_column_reads_as_before() {
        let mut first = rows()[0];
        first.invoice_number = "";
        first.product_id = "";
        let file = String::from_utf8(written(&[first])).unwrap();
        let old = file
            .replace(",reverses,invoice_number,product_id\r\n", "\r\n")
            .replace(",31,,,\r\n", ",31\r\n");
        assert!(!old.contains("reverses"));
        let back = read_all(old.as_bytes()).unwrap();
        assert_eq!(back, read_all(file.as_bytes()).unwrap());
        assert_eq!(back[0].reverses, "");
        assert_eq!(back[0].invoice_number, "");
        assert_eq!(back[0].product_id, "");
    }

    #[test]
    fn columns_in_another_order_read_the_same() {
        let rows = rows();
        let file = written(&rows);
        // Reverse the columns of every record (and add an unknown one).
        let mut rdr = csv::Reader::from_reader(&file[..]);
        let mut w = csv::Writer::from_writer(Vec::new());
        let mut h: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
        h.reverse();
        h.push("extra".into());
        w.write_record(&h).unwrap();
        for rec in rdr.records() {
            let mut f: Vec<String> = rec.unwrap().iter().map(String::from).collect();
            f.reverse();
            f.push("x".into());
            w.write_record(&f).unwrap();
        }
        let reordered = w.into_inner().unwrap();
        assert_eq!(read_all(&reordered).unwrap(), read_all(&file).unwrap());
    }

    #[test]
    fn a_missing_column_is_named() {
        let file = b"partner_id,customer_id\r\n1,2\r\n";
        let e = LedgerReader::new("out/ledger.csv", &file[..])
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("out/ledger.csv:1 column 'program_id'"), "{e}");
    }

    #[test]
    fn an_unreadable_amount_is_named() {
        let mut file = written(&rows()[..1]);
        let text = String::from_utf8(file.clone())
            .unwrap()
            .replace("4.02", "x");
        file = text.into_bytes();
        let e = read_all(&file).unwrap_err().to_string();
        assert!(
            e.starts_with("ledger.csv:2 column 'accrual_amount': 'x'"),
            "{e}"
        );
    }

    #[test]
    fn an_escaped_spelling_is_an_id_of_its_own() {
        // `-P1` is written `'-P1`; the ID `'-P1` must not read back as `-P1`.
        let base = rows()[0];
        let ids = ["-P1", "'-P1", "''-P1", "'P1", "'"];
        let rows: Vec<LedgerRow> = ids
            .iter()
            .map(|&id| LedgerRow {
                partner_id: id,
                customer_id: id,
                ..base
            })
            .collect();
        let back = read_all(&written(&rows)).unwrap();
        let got: Vec<(&str, &str)> = back
            .iter()
            .map(|b| (b.partner_id.as_str(), b.customer_id.as_str()))
            .collect();
        let want: Vec<(&str, &str)> = ids.iter().map(|&id| (id, id)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn lines_count_newlines_inside_values() {
        // rows()[1] holds one newline: the row after it starts two lines on.
        let mut r = rows();
        r.push(r[0]);
        let mut file = String::from_utf8(written(&r)).unwrap();
        let last = file.rfind("EUR").unwrap();
        file.replace_range(last..last + 3, "E?");
        let e = read_all(file.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("ledger.csv:5 column 'currency'"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 500, .. Default::default() })]
        /// Whatever text the ledger's IDs hold (delimiters, quotes, line
        /// breaks, formula signs, other scripts), it reads back as written,
        /// and each row's line is the file line it starts on.
        #[test]
        fn any_text_reads_back_on_its_line(
            texts in proptest::collection::vec(
                proptest::collection::vec("[a-z0-9 ,;'\"\r\n=+@\\-\u{e9}\u{4e2d}]{0,12}", 6),
                1..8,
            ),
        ) {
            let base = rows()[0];
            let rows: Vec<LedgerRow> = texts
                .iter()
                .map(|t| LedgerRow {
                    partner_id: &t[0],
                    customer_id: &t[1],
                    program_id: &t[2],
                    subscription_id: &t[3],
                    source_file: &t[4],
                    invoice_number: &t[5],
                    ..base
                })
                .collect();
            let file = written(&rows);
            let mut rdr = LedgerReader::new("ledger.csv", &file[..]).unwrap();
            let mut line = 2;
            for (r, t) in rows.iter().zip(&texts) {
                let row = rdr.next_row().unwrap().unwrap();
                proptest::prop_assert_eq!(row.line(), line);
                let b = row.record().unwrap();
                proptest::prop_assert_eq!(&b.partner_id, r.partner_id);
                proptest::prop_assert_eq!(&b.customer_id, r.customer_id);
                proptest::prop_assert_eq!(&b.program_id, r.program_id);
                proptest::prop_assert_eq!(&b.subscription_id, r.subscription_id);
                proptest::prop_assert_eq!(&b.source_file, r.source_file);
                proptest::prop_assert_eq!(&b.invoice_number, r.invoice_number);
                line += 1 + t.iter().map(|f| f.matches('\n').count() as u64).sum::<u64>();
            }
            proptest::prop_assert!(rdr.next_row().unwrap().is_none());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2_000, .. Default::default() })]
        /// A damaged or hostile ledger (any bytes after a real header, or no
        /// header at all) gives rows or an error naming the file, never a
        /// panic, and every row's line moves forward.
        #[test]
        fn any_bytes_give_rows_or_an_error(
            body in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b','),
                    proptest::strategy::Just(b'"'),
                    proptest::strategy::Just(b'\r'),
                    proptest::strategy::Just(b'\n'),
                    proptest::strategy::Just(b'\''),
                    proptest::prelude::any::<u8>(),
                ],
                0..400,
            ),
            with_header in proptest::prelude::any::<bool>(),
        ) {
            let mut file = if with_header { header() } else { Vec::new() };
            file.extend_from_slice(&body);
            if let Ok(mut rdr) = LedgerReader::new("ledger.csv", &file[..]) {
                let mut last = 1;
                loop {
                    match rdr.next_row() {
                        Ok(Some(row)) => {
                            proptest::prop_assert!(row.line() > last);
                            last = row.line();
                            let _ = row.record();
                        }
                        Ok(None) => break,
                        Err(e) => {
                            proptest::prop_assert!(e.to_string().starts_with("ledger.csv:"), "{e}");
                            break;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_row_that_is_not_text_or_not_whole_is_named_by_line() {
        let r = rows();
        let mut file = written(&r);
        // The second row's customer holds a byte that is no UTF-8 text.
        let at = file.windows(4).position(|w| w == b"a, \"").unwrap();
        file[at] = 0xff;
        let e = read_all(&file).unwrap_err().to_string();
        assert!(
            e.starts_with("ledger.csv:3 column 'customer_id'") && e.contains("UTF-8"),
            "{e}"
        );
        // A row with a field fewer than the header.
        let text = String::from_utf8(written(&r[..1])).unwrap();
        let short = text.replace(",G012345678,CFQ7TTC0LF8Q\r\n", ",G012345678\r\n");
        let e = read_all(short.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("ledger.csv:2"), "{e}");
        assert!(e.contains("fields"), "{e}");
    }

    #[test]
    fn not_eligible_and_reject_rows() {
        let mut w = RowBuf::default();
        write_not_eligible_row(
            &mut w,
            &NotEligibleRow {
                source_file: "a.csv",
                source_line: 3,
                customer_id: "c",
                subscription_id: "s",
                charge_date: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
                basis_amount: d("5"),
                basis_min_dp: 2,
                currency: Some(eur()),
                reason: "no_designation",
                detail: "x, y",
            },
        );
        write_not_eligible_row(
            &mut w,
            &NotEligibleRow {
                source_file: "u.csv",
                source_line: 4,
                customer_id: "c",
                subscription_id: "w1;w2",
                charge_date: NaiveDate::from_ymd_opt(2026, 1, 2).unwrap(),
                basis_amount: d("120"),
                basis_min_dp: 0,
                currency: None,
                reason: "below_threshold",
                detail: "",
            },
        );
        write_reject_row(
            &mut w,
            &RejectRow {
                source_file: "a.csv",
                source_line: 5,
                column: "Subtotal",
                value: "-x",
                reason: "not an amount",
            },
        );
        assert_eq!(
            String::from_utf8(w.buf).unwrap(),
            "a.csv,3,c,s,2026-01-02,5.00,EUR,no_designation,\"x, y\"\r\n\
             u.csv,4,c,w1;w2,2026-01-02,120,,below_threshold,\r\n\
             a.csv,5,Subtotal,'-x,not an amount\r\n"
        );
    }

    #[test]
    fn column_kinds() {
        // Positions in `ledger.csv` and `ledger.parquet`.
        assert_eq!(DECIMAL_COLUMNS, [9, 10, 11, 12]);
        assert_eq!(INT_COLUMNS, [8, 14, 15, 16]);
        assert_eq!(DATE_COLUMN, 5);
        assert_eq!(
            LEDGER_HEADER[LedgerColumn::ChargeDays as usize],
            "charge_days"
        );
        assert_eq!(LEDGER_HEADER[LedgerColumn::Currency as usize], "currency");
        assert_eq!(
            LEDGER_HEADER[LedgerColumn::AccrualMonth as usize],
            "accrual_month"
        );
        assert_eq!(
            LEDGER_HEADER[LedgerColumn::AccrualMonth as usize - 1],
            "charge_date"
        );
    }
}
