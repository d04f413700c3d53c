//! The files of a tie-out (`porledger tieout`): `tieout.csv` (one row per
//! grain), `tieout.json` (totals and the row accounting), `rejects.csv` (the
//! earnings rows that could not be read) and, per partner,
//! `partners/<id>/tieout.csv` (the partner's totals, then its rows that are not
//! `matched`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::csv_text::{push_decimal_str, push_uint_str, RowBuf};
use crate::error::Fatal;
use crate::ingest::earnings::EarningsRead;
use crate::money::Currency;
use crate::render::publish::{self, HashingWriter, Written};
use crate::tieout::{Class, Report, TieRow, Totals};

/// The header of `tieout.csv` (and of the rows of a partner's `tieout.csv`).
pub const TIEOUT_HEADER: [&str; 23] = [
    "id",
    "class",
    "reason",
    "partner_id",
    "partner_name",
    "program_id",
    "customer_id",
    "customer_name",
    "subscription_id",
    "invoice_number",
    "product_id",
    "month",
    "currency",
    "expected",
    "paid",
    "difference",
    "porledger_rate",
    "microsoft_rate",
    "due",
    "explanation",
    "ledger_lines",
    "earnings_rows",
    "issued_lines",
];

/// The header of a partner's totals block.
pub const PARTNER_TOTALS_HEADER: [&str; 8] = [
    "currency",
    "expected",
    "paid",
    "adjustments",
    "difference",
    "rows",
    "differences",
    "answer",
];

/// The header of `rejects.csv` of a tie-out.
pub const REJECTS_HEADER: [&str; 5] = ["source_file", "source_line", "column", "value", "reason"];

/// Rates (fractions) separated by spaces, into `out` (cleared first).
fn rates_into(out: &mut String, r: &[Decimal]) {
    out.clear();
    for (i, d) in r.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_decimal_str(out, d.normalize());
    }
}

/// The earnings rows behind a tie-out row, as `file:line` separated by `; `.
pub fn earnings_refs(rows: &[(u32, u64)], files: &[String]) -> String {
    let mut s = String::new();
    push_earnings_refs(&mut s, rows, files);
    s
}

fn push_earnings_refs(s: &mut String, rows: &[(u32, u64)], files: &[String]) {
    for (i, (f, l)) in rows.iter().enumerate() {
        if i > 0 {
            s.push_str("; ");
        }
        s.push_str(files.get(*f as usize).map(|s| s.as_str()).unwrap_or("?"));
        s.push(':');
        push_uint_str(s, *l);
    }
}

fn header(w: &mut RowBuf, h: &[&str]) {
    for c in h {
        w.text(c);
    }
    w.end();
}

/// Appends one tie-out row (columns of [`TIEOUT_HEADER`]); `issued`: the
/// report's [`Report::issued_sources`].
pub fn write_row(w: &mut RowBuf, r: &TieRow<'_>, files: &[String], issued: &[String]) {
    write_row_with(w, r, files, issued, &mut String::new());
}

/// [`write_row`] with a reusable buffer for the joined columns.
fn write_row_with(
    w: &mut RowBuf,
    r: &TieRow<'_>,
    files: &[String],
    issued: &[String],
    scratch: &mut String,
) {
    let dp = r.currency.minor_units();
    w.text(&r.id);
    w.text(r.class.as_str());
    w.text(&r.reason);
    w.text(&r.partner_id);
    w.text(&r.partner_name);
    w.text(&r.program_id);
    w.text(&r.customer_id);
    w.text(&r.customer_name);
    w.text(&r.subscription_id);
    w.text(&r.invoice_number);
    w.text(&r.product_id);
    w.month(r.month);
    w.text(r.currency.as_str());
    w.decimal(r.expected, dp);
    w.decimal(r.paid, dp);
    w.decimal(r.difference, dp);
    rates_into(scratch, &r.porledger_rates);
    w.text(scratch);
    rates_into(scratch, &r.microsoft_rates);
    w.text(scratch);
    match r.due {
        Some(d) => w.date(d),
        None => w.empty(),
    }
    w.text(&r.explanation);
    scratch.clear();
    for (i, l) in r.ledger_lines.iter().enumerate() {
        if i > 0 {
            scratch.push(' ');
        }
        push_uint_str(scratch, *l);
    }
    w.text(scratch);
    scratch.clear();
    push_earnings_refs(scratch, &r.earnings_rows, files);
    w.text(scratch);
    scratch.clear();
    push_earnings_refs(scratch, &r.issued_lines, issued);
    w.text(scratch);
    w.end();
}

/// The one-sentence answer for a partner's currency: does it tie out?
/// Rows not yet due are part of the difference but are not differences, so
/// the answer says how much of the difference they are.
pub fn answer(t: &Totals, currency: Currency) -> String {
    // Rounded to the cent (at least), shown with the currency's minor
    // units: the text depends on the amount, never on how its sum was
    // written (a sum's scale depends on the order of its zero terms).
    let dp = currency.minor_units();
    let diff = t.difference.round_dp(dp.max(2));
    let shown = crate::money::format_exact(diff.abs(), currency);
    let pending = crate::money::format_exact(t.not_yet_due_amount, currency);
    let rows = |n: u64| if n == 1 { "row" } else { "rows" };
    if t.differences == 0 && t.not_yet_due == 0 {
        format!("ties out: every row within the tolerance ({} rows)", t.rows)
    } else if t.differences == 0 {
        format!(
            "ties out so far: every row due is within the tolerance, and {pending} {currency} \
             expected in {} {} is not yet due ({} rows)",
            t.not_yet_due,
            rows(t.not_yet_due),
            t.rows
        )
    } else {
        let of_which = if t.not_yet_due == 0 {
            String::new()
        } else {
            format!(
                "; {pending} {currency} of it is expected in {} {} not yet due",
                t.not_yet_due,
                rows(t.not_yet_due)
            )
        };
        format!(
            "{} of {} rows differ; Microsoft paid {} {currency} {} than porledger expected \
             (adjustments included{of_which})",
            t.differences,
            t.rows,
            shown,
            if diff < Decimal::ZERO { "less" } else { "more" }
        )
    }
}

fn write_bytes(files: &Written, path: &Path, buf: &[u8]) -> Result<(), Fatal> {
    let f = std::fs::File::create(path).map_err(|e| Fatal::io(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, HashingWriter::new(path, f, files));
    w.write_all(buf).map_err(|e| Fatal::io(path, e))?;
    let inner = w
        .into_inner()
        .map_err(|e| Fatal::io(path, e.into_error()))?;
    inner.finish()
}

type Out = std::io::BufWriter<HashingWriter<std::fs::File>>;

fn create(files: &Written, path: &Path) -> Result<Out, Fatal> {
    let f = std::fs::File::create(path).map_err(|e| Fatal::io(path, e))?;
    Ok(std::io::BufWriter::with_capacity(
        1 << 16,
        HashingWriter::new(path, f, files),
    ))
}

fn close(out: Out, path: &Path) -> Result<(), Fatal> {
    let inner = out
        .into_inner()
        .map_err(|e| Fatal::io(path, e.into_error()))?;
    inner.finish()
}

/// How many of a partner's difference rows are kept for its PDF page, per
/// currency: the page shows the largest of each currency that fit on it (far
/// fewer) and counts the rest.
pub const PDF_ROWS: usize = 256;

/// A partner's part of the tie-out while its rows arrive.
struct PartnerPart {
    /// Its `tieout.csv`, open: totals and header written, rows so far.
    out: Out,
    path: std::path::PathBuf,
    /// Its largest differences of each currency (see [`PDF_ROWS`]).
    differences: Vec<TieRow<'static>>,
    /// The length of `differences` at which it is cut back again.
    cut_at: usize,
}

/// A partner whose rows have all been written: what its PDF page needs.
pub struct PartnerDone {
    pub partner_id: String,
    /// Its largest differences of each currency, by currency, largest first
    /// (at most [`PDF_ROWS`] of each, see [`TieRow::by_difference`]).
    pub differences: Vec<TieRow<'static>>,
}

/// Writes `tieout.csv` and every partner's `tieout.csv` (`partner_file`: a
/// partner's display ID -> the path of its file; its directory is created),
/// from the rows as [`crate::tieout::TieOut::finish_with`] hands them over:
/// each batch's rows are formatted on the worker pool, once, and written to
/// `tieout.csv` (on a thread of its own while the next batch is formatted,
/// see `MainFile`), and those not `matched` (the rows behind the partner's
/// difference) to the partner's file as well. The report is final before the
/// first row arrives, so a partner's file starts with its totals and its rows
/// stream after them: nothing waits in memory but the partner's largest
/// differences (its PDF).
pub struct TieoutWriter<'a> {
    files: &'a Written,
    main: MainFile,
    earnings_files: &'a [String],
    partner_file: &'a (dyn Fn(&str) -> std::path::PathBuf + Sync),
    partners: std::collections::HashMap<String, PartnerPart>,
}

impl<'a> TieoutWriter<'a> {
    /// Creates `dir/tieout.csv` and writes its header.
    pub fn create(
        files: &'a Written,
        dir: &Path,
        earnings_files: &'a [String],
        partner_file: &'a (dyn Fn(&str) -> std::path::PathBuf + Sync),
    ) -> Result<TieoutWriter<'a>, Fatal> {
        let path = dir.join("tieout.csv");
        let mut out = create(files, &path)?;
        let mut w = RowBuf::default();
        header(&mut w, &TIEOUT_HEADER);
        out.write_all(&w.buf).map_err(|e| Fatal::io(&path, e))?;
        Ok(TieoutWriter {
            files,
            main: MainFile::open(out, path),
            earnings_files,
            partner_file,
            partners: Default::default(),
        })
    }

    /// Writes `rows` (the next rows of `report`, whose totals are final),
    /// taking them out of the vector (which the caller reuses), then closes
    /// the files of the partners in `done`; returns those partners, for
    /// their PDFs.
    pub fn rows(
        &mut self,
        report: &Report,
        rows: &mut Vec<TieRow<'_>>,
        done: Vec<String>,
    ) -> Result<Vec<PartnerDone>, Fatal> {
        use rayon::prelude::*;
        const CHUNK: usize = 1024;
        let files = self.earnings_files;
        let issued = &report.issued_sources;
        // Each chunk of rows formatted into one buffer; `ends[i]`: where row i ends.
        let formatted: Vec<(Vec<u8>, Vec<usize>)> = rows
            .par_chunks(CHUNK)
            .map(|chunk| {
                // Room for rows of this size (~330 bytes in a large tie-out),
                // so the buffer is seldom grown and copied.
                let mut w = RowBuf::with_buffer(Vec::with_capacity(chunk.len() * 384));
                let mut scratch = String::new();
                let mut ends = Vec::with_capacity(chunk.len());
                for r in chunk {
                    write_row_with(&mut w, r, files, issued, &mut scratch);
                    ends.push(w.buf.len());
                }
                (w.buf, ends)
            })
            .collect();
        // The partners' files here (the rows behind their differences, so
        // few), then the batch to `tieout.csv`'s writer.
        let TieoutWriter {
            files,
            partner_file,
            partners,
            main,
            ..
        } = self;
        // Rows come by partner: a matched row of the partner before it
        // needs no look-up (its file is open, and holds no matched row).
        let mut last: Option<&str> = None;
        for ((buf, ends), chunk) in formatted.iter().zip(rows.chunks(CHUNK)) {
            let mut start = 0;
            for (r, &end) in chunk.iter().zip(ends) {
                let same = last == Some(&*r.partner_id);
                last = Some(&r.partner_id);
                if same && r.class == Class::Matched {
                    start = end;
                    continue;
                }
                let part = match partners.get_mut(&*r.partner_id) {
                    Some(p) => p,
                    None => {
                        let p = open_partner(files, report, &r.partner_id, partner_file)?;
                        partners.entry(r.partner_id.to_string()).or_insert(p)
                    }
                };
                // A partner's file holds the rows behind its difference; its
                // matched rows are in `tieout.csv`.
                if r.class != Class::Matched {
                    part.out
                        .write_all(&buf[start..end])
                        .map_err(|e| Fatal::io(&part.path, e))?;
                }
                start = end;
            }
        }
        main.write(formatted.into_iter().map(|(buf, _)| buf).collect())?;
        for r in rows.drain(..) {
            if !r.is_difference() {
                continue;
            }
            if let Some(part) = partners.get_mut(&*r.partner_id) {
                part.differences.push(r.into_owned());
                if part.differences.len() >= part.cut_at {
                    TieRow::keep_largest(&mut part.differences, PDF_ROWS);
                    part.cut_at = (2 * part.differences.len()).max(2 * PDF_ROWS);
                }
            }
        }
        let mut finished = Vec::with_capacity(done.len());
        for id in done {
            let mut differences = match partners.remove(&id) {
                Some(part) => {
                    close(part.out, &part.path)?;
                    part.differences
                }
                None => {
                    // Not reached: a done partner had rows. Its file all the same.
                    let part = open_partner(files, report, &id, partner_file)?;
                    close(part.out, &part.path)?;
                    Vec::new()
                }
            };
            TieRow::keep_largest(&mut differences, PDF_ROWS);
            finished.push(PartnerDone {
                partner_id: id,
                differences,
            });
        }
        Ok(finished)
    }

    /// Finishes `tieout.csv`.
    pub fn finish(self) -> Result<(), Fatal> {
        if let Some(id) = self.partners.keys().next() {
            return Err(Fatal::Input(format!(
                "internal error: the tie-out rows of partner {id} were never finished"
            )));
        }
        self.main.finish()
    }
}

/// `tieout.csv` while its rows arrive. With two worker threads or more it is
/// written and hashed on a thread of its own (its bytes are most of a
/// tie-out's output), so the pool formats and classifies the next rows
/// meanwhile; with one, on the caller's thread.
struct MainFile {
    path: std::path::PathBuf,
    to: To,
}

/// Where [`MainFile`]'s rows go.
enum To {
    /// Written here (one worker thread).
    Here(Out),
    /// The writer thread and the batches to it, in order (two at most
    /// waiting); it hands the file back when the batches end, or the first
    /// error.
    Thread {
        send: crossbeam_channel::Sender<Vec<Vec<u8>>>,
        thread: std::thread::JoinHandle<Result<Out, Fatal>>,
    },
    /// Handed back, or its writer stopped.
    Closed,
}

impl MainFile {
    fn open(out: Out, path: std::path::PathBuf) -> MainFile {
        if rayon::current_num_threads() < 2 {
            return MainFile {
                path,
                to: To::Here(out),
            };
        }
        let (send, batches) = crossbeam_channel::bounded::<Vec<Vec<u8>>>(2);
        let at = path.clone();
        let thread = std::thread::spawn(move || -> Result<Out, Fatal> {
            let mut out = out;
            for batch in batches {
                for buf in &batch {
                    out.write_all(buf).map_err(|e| Fatal::io(&at, e))?;
                }
            }
            Ok(out)
        });
        MainFile {
            path,
            to: To::Thread { send, thread },
        }
    }

    /// Appends `bufs`, in order.
    fn write(&mut self, bufs: Vec<Vec<u8>>) -> Result<(), Fatal> {
        match &mut self.to {
            To::Here(out) => {
                for buf in &bufs {
                    out.write_all(buf).map_err(|e| Fatal::io(&self.path, e))?;
                }
                return Ok(());
            }
            To::Thread { send, .. } => {
                if send.send(bufs).is_ok() {
                    return Ok(());
                }
            }
            To::Closed => {}
        }
        // The writer stopped: on an error, which it returns.
        self.take().map(|_| ())
    }

    /// The file back: at once, or when the writer has written every batch
    /// (or its error).
    fn take(&mut self) -> Result<Out, Fatal> {
        match std::mem::replace(&mut self.to, To::Closed) {
            To::Here(out) => Ok(out),
            To::Thread { send, thread } => {
                drop(send);
                thread
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            }
            To::Closed => Err(Fatal::Input(format!(
                "internal error: {} was written after it was closed",
                self.path.display()
            ))),
        }
    }

    /// Flushes and closes the file, recording its digest.
    fn finish(mut self) -> Result<(), Fatal> {
        let out = self.take()?;
        close(out, &self.path)
    }
}

impl Drop for MainFile {
    /// On an error elsewhere, the writer is waited for: no thread goes on
    /// writing into a staging directory that is being removed.
    fn drop(&mut self) {
        if let To::Thread { send, thread } = std::mem::replace(&mut self.to, To::Closed) {
            drop(send);
            let _ = thread.join();
        }
    }
}

/// Creates a partner's `tieout.csv` (and its directory) and writes its
/// totals and the rows' header.
fn open_partner(
    files: &Written,
    report: &Report,
    id: &str,
    partner_file: &(dyn Fn(&str) -> std::path::PathBuf + Sync),
) -> Result<PartnerPart, Fatal> {
    let path = partner_file(id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Fatal::io(dir, e))?;
    }
    let mut out = create(files, &path)?;
    let mut head = RowBuf::default();
    partner_head(&mut head, report, id);
    out.write_all(&head.buf).map_err(|e| Fatal::io(&path, e))?;
    Ok(PartnerPart {
        out,
        path,
        differences: Vec::new(),
        cut_at: 2 * PDF_ROWS,
    })
}

/// A partner's totals per currency, a blank line and the rows' header.
fn partner_head(w: &mut RowBuf, report: &Report, partner_id: &str) {
    header(w, &PARTNER_TOTALS_HEADER);
    let none = std::collections::BTreeMap::new();
    let totals = report.partner_totals.get(partner_id).unwrap_or(&none);
    for (cur, t) in totals {
        let dp = cur.minor_units();
        w.text(cur.as_str());
        w.decimal(t.expected, dp);
        w.decimal(t.paid, dp);
        w.decimal(t.adjustments, dp);
        w.decimal(t.difference, dp);
        w.num(t.rows);
        w.num(t.differences);
        w.text(&answer(t, *cur));
        w.end();
    }
    w.buf.extend_from_slice(b"\r\n");
    header(w, &TIEOUT_HEADER);
}

/// Writes the earnings rows that could not be read.
pub fn write_rejects(files: &Written, path: &Path, read: &EarningsRead) -> Result<(), Fatal> {
    let mut w = RowBuf::default();
    header(&mut w, &REJECTS_HEADER);
    for r in &read.rejects {
        w.text(&r.file);
        w.num(r.line);
        w.text(&r.column);
        w.text(&r.value);
        w.text(&r.reason);
        w.end();
    }
    write_bytes(files, path, &w.buf)
}

/// The row accounting of the earnings files.
#[derive(Serialize, Clone, Debug)]
pub struct Accounting {
    /// Data rows in the files.
    pub rows_read: u64,
    /// Rows repeating an earlier `earningId` (Growth report): counted once.
    pub duplicates: u64,
    /// rows_read - duplicates = matched + unmatched + adjustments + rejected.
    pub rows: u64,
    /// Rows in a grain where porledger accrued.
    pub matched: u64,
    /// Rows in a grain where porledger accrued nothing (paid-not-expected).
    pub unmatched: u64,
    pub adjustments: u64,
    pub rejected: u64,
    pub balanced: bool,
}

impl Accounting {
    pub fn of(read: &EarningsRead, report: &Report) -> Accounting {
        let rows = read.rows_read - read.duplicates;
        let rejected = read.rejects.len() as u64;
        Accounting {
            rows_read: read.rows_read,
            duplicates: read.duplicates,
            rows,
            matched: report.earnings_matched,
            unmatched: report.earnings_unmatched,
            adjustments: report.earnings_adjustments,
            rejected,
            balanced: rows
                == report.earnings_matched
                    + report.earnings_unmatched
                    + report.earnings_adjustments
                    + rejected,
        }
    }
}

#[derive(Serialize)]
struct FileJson<'a> {
    path: &'a str,
    sha256: &'a str,
    bytes: u64,
}

#[derive(Serialize)]
struct TotalJson<'a> {
    partner_id: &'a str,
    partner_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    program_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    month: Option<String>,
    currency: &'a str,
    expected: String,
    paid: String,
    adjustments: String,
    difference: String,
    rows: u64,
    differences: u64,
    not_yet_due: u64,
    not_yet_due_amount: String,
    /// Per partner and currency, without `--history`: the run's statement
    /// total beside `expected` (the rows' expected amounts, each rounded on
    /// its own: the two can differ by rounding).
    #[serde(skip_serializing_if = "Option::is_none")]
    statement_total: Option<String>,
}

fn total_json<'a>(
    partner_id: &'a str,
    name: &'a str,
    program_id: Option<&'a str>,
    month: Option<String>,
    cur: &'a Currency,
    t: &Totals,
) -> TotalJson<'a> {
    let f = |d: Decimal| crate::money::format_exact(d, *cur);
    TotalJson {
        partner_id,
        partner_name: name,
        program_id,
        month,
        currency: cur.as_str(),
        expected: f(t.expected),
        paid: f(t.paid),
        adjustments: f(t.adjustments),
        difference: f(t.difference),
        rows: t.rows,
        differences: t.differences,
        not_yet_due: t.not_yet_due,
        not_yet_due_amount: f(t.not_yet_due_amount),
        statement_total: None,
    }
}

/// What `tieout.json` says besides the totals.
pub struct JsonHead<'a> {
    pub run: &'a str,
    pub period: &'a str,
    pub as_of: String,
    pub tolerance: Decimal,
    pub read: &'a EarningsRead,
    /// `--history`: the file, the accrual months and the issued versions
    /// the expected side took (see `docs/tieout.md`).
    pub history: Option<serde_json::Value>,
    /// Without `--history` (when the expected side is the run's accruals
    /// alone): the run's statement totals per partner ([`crate::ingest::id_key`])
    /// and currency, shown beside the partners' expected totals.
    pub statement_totals: Option<&'a BTreeMap<(String, Currency), Decimal>>,
}

/// Writes `tieout.json`.
pub fn write_tieout_json(
    files: &Written,
    dir: &Path,
    head: &JsonHead<'_>,
    report: &Report,
) -> Result<(), Fatal> {
    #[derive(Serialize)]
    struct Json<'a> {
        tool: &'static str,
        version: &'static str,
        run: &'a str,
        period: &'a str,
        as_of: &'a str,
        tolerance: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        history: Option<&'a serde_json::Value>,
        earnings_files: Vec<FileJson<'a>>,
        accounting: Accounting,
        classes: std::collections::BTreeMap<&'static str, u64>,
        differences: u64,
        partners: Vec<TotalJson<'a>>,
        totals: Vec<TotalJson<'a>>,
    }
    let name = |p: &str| -> &str {
        report
            .partner_names
            .get(p)
            .map(|s| s.as_str())
            .unwrap_or("")
    };
    let classes = Class::ALL
        .iter()
        .map(|c| (c.as_str(), report.classes.get(c).copied().unwrap_or(0)))
        .collect();
    let json = Json {
        tool: "porledger",
        version: env!("CARGO_PKG_VERSION"),
        run: head.run,
        period: head.period,
        as_of: &head.as_of,
        tolerance: head.tolerance.normalize().to_string(),
        history: head.history.as_ref(),
        earnings_files: head
            .read
            .files
            .iter()
            .map(|(p, d)| FileJson {
                path: p,
                sha256: &d.sha256,
                bytes: d.bytes,
            })
            .collect(),
        accounting: Accounting::of(head.read, report),
        classes,
        differences: report.differences,
        partners: report
            .partner_totals
            .iter()
            .flat_map(|(p, by)| by.iter().map(move |(c, t)| (p, c, t)))
            .map(|(p, c, t)| {
                let mut j = total_json(p, name(p), None, None, c, t);
                j.statement_total = head.statement_totals.map(|s| {
                    let total = s
                        .get(&(crate::ingest::id_key(p), *c))
                        .copied()
                        .unwrap_or(Decimal::ZERO);
                    crate::money::format_exact(total, *c)
                });
                j
            })
            .collect(),
        totals: report
            .totals
            .iter()
            .map(|((p, prog, m, c), t)| {
                total_json(p, name(p), Some(prog.as_str()), Some(m.to_string()), c, t)
            })
            .collect(),
    };
    publish::write_json(files, &dir.join("tieout.json"), &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(threads: usize) -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
    }

    /// Batches of rows bigger than the file's buffer, each byte telling
    /// batch and position apart.
    fn batches() -> Vec<Vec<Vec<u8>>> {
        (0..7u8)
            .map(|b| {
                (0..5u8)
                    .map(|i| vec![b'a' + b + i; 30_000 + usize::from(i) * 7_001])
                    .collect()
            })
            .collect()
    }

    #[test]
    fn tieout_csv_is_written_in_order_and_hashed_with_one_thread_and_two() {
        let want: Vec<u8> = batches().concat().concat();
        for threads in [1, 2] {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("tieout.csv");
            let files = Written::new();
            pool(threads).install(|| {
                let mut main = MainFile::open(create(&files, &path).unwrap(), path.clone());
                assert_eq!(matches!(main.to, To::Thread { .. }), threads > 1);
                for b in batches() {
                    main.write(b).unwrap();
                }
                main.finish().unwrap();
            });
            assert_eq!(std::fs::read(&path).unwrap(), want, "{threads} threads");
            // The digest recorded while writing is the file's.
            let recorded = publish::hash_outputs(tmp.path(), &files).unwrap();
            let read = publish::hash_outputs(tmp.path(), &Written::new()).unwrap();
            assert_eq!(recorded.len(), 1);
            assert_eq!(recorded[0].sha256, read[0].sha256);
            assert_eq!(recorded[0].bytes, want.len() as u64);
        }
    }

    /// A device that is always full: every write fails as a full disk does.
    #[test]
    fn a_write_error_on_the_writer_thread_is_returned_naming_the_file() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        for threads in [1, 2] {
            let files = Written::new();
            let err = pool(threads).install(|| -> Fatal {
                let f = std::fs::OpenOptions::new().write(true).open(full).unwrap();
                let out =
                    std::io::BufWriter::with_capacity(1 << 16, HashingWriter::new(full, f, &files));
                let mut main = MainFile::open(out, full.to_path_buf());
                for b in batches() {
                    if let Err(e) = main.write(b) {
                        return e;
                    }
                }
                main.finish().unwrap_err()
            });
            let msg = err.to_string();
            assert!(
                msg.contains("/dev/full") && msg.to_lowercase().contains("no space"),
                "{threads} threads: {msg}"
            );
        }
    }

    /// Dropped on an error elsewhere: the writer thread ends before the drop
    /// returns, with what it was given written.
    #[test]
    fn a_writer_dropped_midway_is_waited_for() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tieout.csv");
        let files = Written::new();
        pool(2).install(|| {
            let mut main = MainFile::open(create(&files, &path).unwrap(), path.clone());
            for b in batches() {
                main.write(b).unwrap();
            }
            drop(main);
        });
        let want: Vec<u8> = batches().concat().concat();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
