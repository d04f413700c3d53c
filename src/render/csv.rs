//! CSV outputs. Every text value goes through [`excel_safe`]; amounts are plain
//! decimals with `.` as separator, never in scientific notation.

use std::io::Write;
use std::path::Path;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{excel_safe, sanitize_file_name};
pub use crate::csv_text::{push_date, push_uint, RowBuf};
use crate::error::Fatal;
use crate::money::{format_exact, format_exact_dp, Currency};
use crate::statements::{
    CurrencyTotal, CustomerStatement, PartnerStatement, ProgramTotal, StatementLine, StatementSet,
};

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

/// A CSV document of several sections separated by truly empty lines, written
/// field by field into one buffer ([`RowBuf`]: the csv crate's quoting and
/// formula neutralisation, without a `String` per field; statements hold one
/// row per group, millions in a large run).
struct Sections {
    b: RowBuf,
}

impl Sections {
    fn new() -> Sections {
        Sections {
            b: RowBuf::default(),
        }
    }

    /// A row of text fields.
    fn row(&mut self, fields: &[&str]) {
        for f in fields {
            self.b.text(f);
        }
        self.b.end();
    }

    /// An empty line between sections.
    fn blank(&mut self) {
        self.b.end();
    }

    /// An exact amount, with at least the currency's minor digits ([`format_exact`]).
    fn exact(&mut self, d: Decimal, c: Currency) {
        self.b.decimal(d, c.minor_units());
    }

    /// A rate or share ([`ratio`]).
    fn ratio(&mut self, d: Decimal) {
        self.b.decimal(d, 1);
    }

    /// A rounded amount as it is ([`amount`]).
    fn amount(&mut self, d: Decimal) {
        self.b.display(d);
    }

    fn finish(self) -> Vec<u8> {
        self.b.buf
    }

    /// Hands the rows buffered so far to `out` once they are [`SPILL`]
    /// bytes or more: a large partner's statement is written as it is
    /// formatted instead of whole in memory (several megabytes per partner,
    /// on each of the I/O threads at once).
    fn spill(&mut self, out: &mut dyn Write, at: usize) -> std::io::Result<()> {
        if self.b.buf.len() >= at {
            out.write_all(&self.b.buf)?;
            self.b.buf.clear();
        }
        Ok(())
    }
}

/// See [`Sections::spill`].
const SPILL: usize = 256 * 1024;

fn write_totals(w: &mut Sections, totals: &[CurrencyTotal]) {
    let converted = totals.iter().any(|t| t.converted.is_some());
    if !converted {
        w.row(&["total", "currency", "basis_amount", "accrual_amount"]);
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
        ]);
    }
    for t in totals {
        w.b.text("total");
        w.b.text(t.currency.as_str());
        w.exact(t.basis, t.currency);
        w.amount(t.amount);
        if let Some(c) = &t.converted {
            w.b.text(c.currency.as_str());
            w.ratio(c.rate);
            w.b.text(&date(c.rate_date));
            w.amount(c.amount);
        }
        w.b.end();
    }
}

/// The end of a statement's header block: period, statement date, rounding.
fn period_block(w: &mut Sections, set: &StatementSet) {
    w.row(&["period", &set.period.label()]);
    w.row(&["statement_date", &set.period.last_day().to_string()]);
    w.row(&["rounding", set.rounding.as_str()]);
    w.blank();
}

/// The total over months to print after line `i` of `lines`: the customer and
/// program's [`ProgramTotal`] when line `i` is its last month line and it has
/// more than one month (`totals` walks [`PartnerStatement::program_totals`], in
/// the order of the lines).
pub fn month_total_after<'t>(
    lines: &[StatementLine],
    i: usize,
    totals: &mut std::slice::Iter<'t, ProgramTotal>,
) -> Option<&'t ProgramTotal> {
    let l = &lines[i];
    let last = lines.get(i + 1).is_none_or(|n| {
        n.customer_id != l.customer_id || n.program_id != l.program_id || n.currency != l.currency
    });
    if !last {
        return None;
    }
    let t = totals.next()?;
    (t.months > 1).then_some(t)
}

/// The partner statement as CSV: a header block, one line per customer,
/// program, currency and accrual month (and a `total` row per customer and
/// program of more than one month), then totals per currency.
///
/// Written to `out` as it is formatted, 256 KiB at a time.
pub fn write_partner_statement(
    p: &PartnerStatement,
    set: &StatementSet,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    write_partner_statement_in(p, set, out, SPILL)
}

/// [`write_partner_statement`], handing rows on once `spill` bytes wait.
fn write_partner_statement_in(
    p: &PartnerStatement,
    set: &StatementSet,
    out: &mut dyn Write,
    spill: usize,
) -> std::io::Result<()> {
    let mut w = Sections::new();
    w.row(&["porledger partner statement"]);
    w.row(&["partner_id", &p.partner_id]);
    w.row(&["partner_name", &p.partner_name]);
    period_block(&mut w, set);
    w.row(&[
        "customer_id",
        "customer_name",
        "program_id",
        "program_name",
        "accrual_month",
        "currency",
        "lines",
        "basis_amount",
        "rate",
        "accrual_exact",
        "accrual_amount",
    ]);
    let mut totals = p.program_totals.iter();
    // A program's months are a run of one customer's lines.
    let each = p
        .customers
        .iter()
        .flat_map(|c| (0..c.lines.len()).map(|i| (&c.lines, i)));
    for (lines, i) in each {
        w.spill(out, spill)?;
        let l = &lines[i];
        w.b.text(&l.customer_id);
        w.b.text(&l.customer_name);
        w.b.text(&l.program_id);
        w.b.text(&l.program_name);
        w.b.month(l.month);
        w.b.text(l.currency.as_str());
        w.b.num(l.lines);
        w.exact(l.basis, l.currency);
        match l.rate {
            Some(r) => w.ratio(r),
            None => w.b.text("various"),
        }
        w.exact(l.accrual_exact, l.currency);
        w.amount(l.amount);
        w.b.end();
        if let Some(t) = month_total_after(lines, i, &mut totals) {
            w.b.text(&t.customer_id);
            w.b.text(&l.customer_name);
            w.b.text(&t.program_id);
            w.b.text(&l.program_name);
            w.b.text("total");
            w.b.text(t.currency.as_str());
            w.b.num(t.lines);
            w.exact(t.basis, t.currency);
            w.b.empty();
            w.b.empty();
            w.amount(t.amount);
            w.b.end();
        }
    }
    w.blank();
    write_totals(&mut w, &p.totals);
    if let Some((c, total)) = &p.reporting_total {
        w.b.text("total_converted");
        w.b.text(c.as_str());
        w.b.empty();
        w.amount(*total);
        w.b.end();
    }
    out.write_all(&w.finish())?;
    // Usage attainment and tier-rate sections (empty without --usage).
    let sections = super::attainment::statement_sections(p).map_err(std::io::Error::other)?;
    out.write_all(&sections)
}

/// The customer transparency statement as CSV: what this partner earned from
/// this customer, by program, with the designations, basis, rate and share.
pub fn customer_statement_csv(
    p: &PartnerStatement,
    c: &CustomerStatement,
    set: &StatementSet,
) -> Vec<u8> {
    let mut w = Sections::new();
    w.row(&["porledger customer transparency statement"]);
    w.row(&["customer_id", &c.customer_id]);
    w.row(&["customer_name", &c.customer_name]);
    w.row(&["partner_id", &p.partner_id]);
    w.row(&["partner_name", &p.partner_name]);
    period_block(&mut w, set);
    w.row(&[
        "designation",
        "association",
        "subscription_id",
        "workload",
        "share",
        "valid_from",
        "valid_to",
    ]);
    for d in &c.designations {
        w.b.text("designation");
        w.b.text(d.association.as_str());
        w.b.text(d.subscription_id.as_deref().unwrap_or("(all)"));
        w.b.text(&d.workload);
        match d.share {
            Some(s) => w.ratio(s),
            None => w.b.text("equal split"),
        }
        w.b.text(&date(d.valid_from));
        w.b.text(&date(d.valid_to));
        w.b.end();
    }
    if c.designations.is_empty() {
        w.row(&[
            "designation",
            "(none: credit from the billing file, reseller or Tier 1)",
        ]);
    }
    w.blank();
    w.row(&[
        "program_id",
        "program_name",
        "accrual_month",
        "association",
        "subscription_id",
        "currency",
        "lines",
        "basis_amount",
        "rate",
        "share",
        "accrual_exact",
    ]);
    for d in &c.details {
        w.b.text(&d.program_id);
        w.b.text(&d.program_name);
        w.b.month(d.month);
        w.b.text(d.association.as_str());
        w.b.text(&d.subscription_id);
        w.b.text(d.currency.as_str());
        w.b.num(d.lines);
        w.exact(d.basis, d.currency);
        w.ratio(d.rate);
        w.ratio(d.share);
        w.exact(d.accrual_exact, d.currency);
        w.b.end();
    }
    w.blank();
    w.row(&[
        "program_id",
        "program_name",
        "accrual_month",
        "currency",
        "lines",
        "basis_amount",
        "accrual_exact",
        "accrual_amount",
    ]);
    let mut totals = c.program_totals.iter();
    for (i, l) in c.lines.iter().enumerate() {
        w.b.text(&l.program_id);
        w.b.text(&l.program_name);
        w.b.month(l.month);
        w.b.text(l.currency.as_str());
        w.b.num(l.lines);
        w.exact(l.basis, l.currency);
        w.exact(l.accrual_exact, l.currency);
        w.amount(l.amount);
        w.b.end();
        if let Some(t) = month_total_after(&c.lines, i, &mut totals) {
            w.b.text(&t.program_id);
            w.b.text(&l.program_name);
            w.b.text("total");
            w.b.text(t.currency.as_str());
            w.b.num(t.lines);
            w.exact(t.basis, t.currency);
            w.b.empty();
            w.amount(t.amount);
            w.b.end();
        }
    }
    w.blank();
    write_totals(&mut w, &c.totals);
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
        let f = std::fs::File::create(&path).map_err(|e| Fatal::io(&path, e))?;
        let mut out = crate::render::publish::HashingWriter::new(&path, f, files);
        write_partner_statement(p, set, &mut out).map_err(|e| Fatal::io(&path, e))?;
        out.finish()?;
        // A run writes a few partners at a time: their customers' files
        // keep the threads busy.
        p.customers.par_iter().try_for_each(|c| {
            let path = cdir.join(format!("{}.csv", sanitize_file_name(&c.customer_id)));
            let bytes = customer_statement_csv(p, c, set);
            crate::render::publish::write_file(files, &path, &bytes)
        })
    })
}

/// Formats a currency-aware exact amount (re-exported for the pipeline).
pub fn exact(d: Decimal, c: Currency) -> String {
    format_exact(d, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A writer that counts the writes it is handed.
    struct Counted(Vec<u8>, usize);

    impl Write for Counted {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.1 += 1;
            self.0.write(b)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_partner_statement_written_in_pieces_is_the_same_file() {
        use crate::attribute::DesignationIndex;
        use crate::config::parse_rules;
        use crate::dates::Period;
        use crate::fold::Fold;
        let rules = parse_rules(
            "rounding = \"half-up\"\n[[program]]\nid = \"p\"\nname = \"P\"\nassociations = [\"RESELLER\"]\nrate = \"0.01\"\n",
        )
        .unwrap();
        let mut fold = Fold::new(1);
        for i in 0..3000u32 {
            for month in [10, 11] {
                let amount = Decimal::new(i64::from(i) * 7 + 5, 3);
                let a = crate::accrue::reseller_accrual("r1", amount, month);
                let eur = Currency::parse("EUR").unwrap();
                fold.add(&a, &format!("customer-{i}, Ltd."), "s", eur);
            }
        }
        let period: Period = "2026-10..2026-11".parse().unwrap();
        let index = DesignationIndex::new(Vec::new());
        let set = crate::statements::build(&mut fold, &rules, &index, period, None).unwrap();
        let p = &set.partners[0];
        let mut whole = Vec::new();
        write_partner_statement(p, &set, &mut whole).unwrap();
        assert!(whole.len() > 2 * SPILL, "{} bytes", whole.len());
        for at in [0, 1, 4096, SPILL, usize::MAX] {
            let mut out = Counted(Vec::new(), 0);
            write_partner_statement_in(p, &set, &mut out, at).unwrap();
            assert!(out.0 == whole, "spilled at {at}");
            if at <= SPILL {
                assert!(out.1 > 2, "{} writes at {at}", out.1);
            }
        }
    }

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
}
