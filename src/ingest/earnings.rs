//! Microsoft's earnings export (Partner Center Earnings > Reports, or the
//! payouts `transactionhistory` API): what Microsoft says it paid.
//!
//! - Default, Summarized or Growth report, `.csv` or `.tsv`: the delimiter is
//!   sniffed from the header line (a `.tsv` file is read as TAB-separated when
//!   its header holds a TAB); a UTF-8 BOM is skipped.
//! - Columns are camelCase and read **by name** (any order, any spelling of
//!   case, `_` or spaces: see [`super::billing::normalize_header`]); unknown
//!   columns are ignored. A missing required column is a fatal error naming
//!   the file and the column.
//! - Records are cut by the billing reader's machinery ([`super::read_chunks`],
//!   [`super::records`]): quote-aware, bounded, with exact line numbers.
//! - Amounts are exact decimals ([`crate::money::parse_amount`], E-notation
//!   included); a row whose amount, date, currency or partner cannot be read
//!   is a reject naming file, line, column and value.
//! - Rows are de-duplicated by `earningId` where present: the Growth report
//!   repeats one earning on every transaction row it was computed from. A
//!   repeat is the same earning only if its earning columns
//!   ([`EARNING_COLUMNS`]) are alike; one that differs there is another
//!   earning under a used ID, and a reject naming the first row.
//!
//! The reader hands each usable row to a callback ([`read_earnings`]), so a
//! five-million-row export is never held in memory; the matching itself is
//! pure ([`crate::tieout`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::billing::normalize_header;
use super::records::{for_each_row, LineProblem, RecordFormat, MAX_RECORD_BYTES};
use super::{read_chunks, read_header, Hashing, InputFile};
use crate::csv_text::{record_text, within};
use crate::dates::parse_date;
use crate::error::Fatal;
use crate::money::{parse_amount, Currency};

/// The fields porledger reads, with the header spellings that name them
/// (normalised: lower case, letters and digits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EField {
    EarningId,
    ParticipantId,
    EarningParticipantId,
    ParticipantName,
    ProgramName,
    EngagementName,
    Lever,
    PartnerAssociation,
    Customer,
    CustomerName,
    SubscriptionId,
    InvoiceNumber,
    ProductId,
    TransactionDate,
    EarningDate,
    TransactionCurrency,
    EarningAmount,
    EarningRate,
    ReasonCode,
    EarningType,
}

/// Bytes read per chunk of an earnings file.
const CHUNK: usize = 8 << 20;

const FIELDS: [(EField, &[&str]); 20] = [
    (EField::EarningId, &["earningid"]),
    (EField::ParticipantId, &["participantid"]),
    (EField::EarningParticipantId, &["earningparticipantid"]),
    (EField::ParticipantName, &["participantname"]),
    (EField::ProgramName, &["programname"]),
    (EField::EngagementName, &["engagementname"]),
    (EField::Lever, &["lever"]),
    (EField::PartnerAssociation, &["partnerassociation"]),
    (EField::Customer, &["customertenantid", "customerid"]),
    (EField::CustomerName, &["customername"]),
    (EField::SubscriptionId, &["subscriptionid"]),
    (EField::InvoiceNumber, &["invoicenumber"]),
    (EField::ProductId, &["productid"]),
    (EField::TransactionDate, &["transactiondate"]),
    (EField::EarningDate, &["earningdate"]),
    (EField::TransactionCurrency, &["transactioncurrency"]),
    (EField::EarningAmount, &["earningamount"]),
    (EField::EarningRate, &["earningrate"]),
    (EField::ReasonCode, &["reasoncode"]),
    (EField::EarningType, &["earningtype"]),
];

/// Where each field is in one file (`None`: the file has no such column).
#[derive(Clone, Debug)]
pub struct EarningsLayout {
    pos: [Option<usize>; 20],
    pub delimiter: u8,
}

impl EarningsLayout {
    /// Finds the fields in `header`; `file` names the file in errors. Needed:
    /// `earningAmount`, `transactionCurrency`, a partner (`participantId` or
    /// `earningParticipantId`) and a date (`transactionDate` or `earningDate`).
    pub fn from_header(file: &str, header: &[String], delimiter: u8) -> Result<Self, Fatal> {
        let norm: Vec<String> = header.iter().map(|h| normalize_header(h)).collect();
        let mut pos = [None; 20];
        for (i, (_, aliases)) in FIELDS.iter().enumerate() {
            pos[i] = super::find_column(&norm, aliases, true).map_err(|(a, b)| Fatal::Data {
                file: file.to_string(),
                line: 1,
                column: None,
                message: super::ambiguous_columns(header, a, b),
            })?;
        }
        let l = EarningsLayout { pos, delimiter };
        let need = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(Fatal::Data {
                    file: file.to_string(),
                    line: 1,
                    column: Some(what.to_string()),
                    message: format!(
                        "the earnings export has no column {what}: not a Partner Center \
                         earnings export, or its header was damaged (header: {})",
                        header.join(",")
                    ),
                })
            }
        };
        need(l.has(EField::EarningAmount), "earningAmount")?;
        need(l.has(EField::TransactionCurrency), "transactionCurrency")?;
        need(
            l.has(EField::ParticipantId) || l.has(EField::EarningParticipantId),
            "participantId (or earningParticipantId)",
        )?;
        need(
            l.has(EField::TransactionDate) || l.has(EField::EarningDate),
            "transactionDate (or earningDate)",
        )?;
        Ok(l)
    }

    fn has(&self, f: EField) -> bool {
        self.pos[f as usize].is_some()
    }
}

/// One usable earnings row, borrowed from the reader.
#[derive(Clone, Debug)]
pub struct EarningRow<'a> {
    /// Index of the file in the list given to [`read_earnings`].
    pub file: u32,
    pub line: u64,
    pub earning_id: &'a str,
    /// `participantId`, or `earningParticipantId` where that is empty.
    pub participant_id: &'a str,
    /// The column `participant_id` was read from.
    pub participant_column: &'static str,
    pub participant_name: &'a str,
    pub program_name: &'a str,
    pub engagement_name: &'a str,
    pub lever: &'a str,
    pub partner_association: &'a str,
    /// `customerTenantId` (older exports: `customerId`); empty for adjustments.
    pub customer_id: &'a str,
    pub customer_name: &'a str,
    pub subscription_id: &'a str,
    pub invoice_number: &'a str,
    pub product_id: &'a str,
    /// `transactionDate`, or `earningDate` where that is empty.
    pub date: NaiveDate,
    pub currency: Currency,
    pub amount: Decimal,
    /// `earningRate` as a fraction (the export writes a percentage: `4` is 4 %).
    pub rate: Option<Decimal>,
    pub reason_code: &'a str,
    pub earning_type: &'a str,
}

/// A row that could not be used: file, line, column, value and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EarningsReject {
    pub file: String,
    pub line: u64,
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// What reading the earnings files counted.
#[derive(Clone, Debug, Default)]
pub struct EarningsRead {
    /// Per file: its name as given, and its SHA-256 and size.
    pub files: Vec<(String, super::FileDigest)>,
    /// Data rows read (every physical record, duplicates and rejects included).
    pub rows_read: u64,
    /// Rows skipped because an earlier row had the same `earningId` and
    /// the same earning columns (a repeat of one earning; a row that
    /// differs there is a reject).
    pub duplicates: u64,
    pub rejects: Vec<EarningsReject>,
}

/// A compact, exact key of an `earningId` for de-duplication: a GUID (any
/// case) or a plain number as 128 bits, anything else as its text folded as
/// every other ID is ([`super::id_key`]: lower case, Unicode's rules beyond
/// ASCII, so `ÉX` and `éx` are one earning). Distinct IDs get distinct keys:
/// the three kinds never meet (a GUID and a number of the same value are
/// different IDs).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum IdKey {
    Guid(u128),
    Num(u128),
    Text(Box<str>),
}

fn id_key(s: &str) -> IdKey {
    if let Some(n) = crate::text::guid_value(s) {
        return IdKey::Guid(n);
    }
    // A plain number without leading zeros maps to itself one-to-one.
    if !s.is_empty()
        && s.len() <= 39
        && s.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('0')
    {
        if let Ok(n) = s.parse::<u128>() {
            return IdKey::Num(n);
        }
    }
    // `super::id_key` lower-cases ASCII text in place and folds by Unicode's
    // rules only when a non-ASCII byte is present.
    IdKey::Text(super::id_key(s).into_boxed_str())
}

/// The columns of an earning (not of a transaction) that porledger reads,
/// in the order a repeat is compared and named by: who earns, the program
/// labels, the currency, amount and rate, the type and the reason code. The
/// Growth report writes an earning on every transaction row it was computed
/// from ("earning attributes are redundantly printed"), so a repeat of it
/// has these alike; the transaction's columns (`transactionDate`,
/// `customerTenantId`, `customerName`, `subscriptionId`, `invoiceNumber`,
/// `productId`, and every column porledger does not read) may differ, and
/// the earning is compared on its first row's. (`participantId` stands for
/// `earningParticipantId` where a row has it from there.)
pub const EARNING_COLUMNS: [&str; 10] = [
    "participantId",
    "programName",
    "engagementName",
    "lever",
    "partnerAssociation",
    "transactionCurrency",
    "earningAmount",
    "earningRate",
    "earningType",
    "reasonCode",
];

/// One value of [`EARNING_COLUMNS`], as compared: texts (IDs and labels)
/// trimmed and case-insensitively, as the tie-out compares them; amounts
/// and rates by value (`80.00` is `8.0E+01`).
#[derive(Clone, Copy, Debug)]
enum Same<'a> {
    Text(&'a str),
    Amount(Decimal),
    Rate(Option<Decimal>),
    Currency(Currency),
}

/// A decimal as compared: by value, one representation per value.
fn canonical(d: Decimal) -> Decimal {
    if d.is_zero() {
        Decimal::ZERO
    } else {
        d.normalize()
    }
}

impl Same<'_> {
    /// Feeds the value as compared to `h` (`scratch`: a buffer for a text
    /// in lower case).
    fn hash_into(&self, h: &mut impl Hasher, scratch: &mut String) {
        match *self {
            Same::Text(t) => {
                if t.is_ascii() && !t.bytes().any(|b| b.is_ascii_uppercase()) {
                    h.write(t.as_bytes());
                } else {
                    super::id_key_into(t, scratch);
                    h.write(scratch.as_bytes());
                }
                // Not UTF-8: no text ends where another begins.
                h.write_u8(0xFF);
            }
            Same::Amount(d) => h.write(&canonical(d).serialize()),
            Same::Rate(None) => h.write_u8(0),
            Same::Rate(Some(r)) => {
                h.write_u8(1);
                h.write(&canonical(r).serialize());
            }
            Same::Currency(c) => h.write(c.as_str().as_bytes()),
        }
    }

    /// The value as compared (equal for equal values only), and as shown.
    fn owned(&self) -> (String, String) {
        match *self {
            Same::Text(t) => (super::id_key(t), t.to_string()),
            Same::Amount(d) => (canonical(d).to_string(), d.to_string()),
            Same::Rate(None) => (String::new(), "(empty)".to_string()),
            Same::Rate(Some(r)) => {
                let pct = canonical(r * Decimal::ONE_HUNDRED);
                (pct.to_string(), pct.to_string())
            }
            Same::Currency(c) => (c.as_str().to_string(), c.as_str().to_string()),
        }
    }
}

/// The earning columns of `e` ([`EARNING_COLUMNS`]), with the column each
/// is named by in a reject.
fn earning_columns<'a>(e: &EarningRow<'a>) -> [(&'static str, Same<'a>); 10] {
    [
        (e.participant_column, Same::Text(e.participant_id)),
        ("programName", Same::Text(e.program_name)),
        ("engagementName", Same::Text(e.engagement_name)),
        ("lever", Same::Text(e.lever)),
        ("partnerAssociation", Same::Text(e.partner_association)),
        ("transactionCurrency", Same::Currency(e.currency)),
        ("earningAmount", Same::Amount(e.amount)),
        ("earningRate", Same::Rate(e.rate)),
        ("earningType", Same::Text(e.earning_type)),
        ("reasonCode", Same::Text(e.reason_code)),
    ]
}

/// The earning columns of a row, owned: (column, as compared, as shown).
type Owned = Vec<(&'static str, String, String)>;

fn owned_columns(e: &EarningRow<'_>) -> Owned {
    earning_columns(e)
        .iter()
        .map(|(c, v)| {
            let (cmp, shown) = v.owned();
            (*c, cmp, shown)
        })
        .collect()
}

/// The `earningId`s seen so far, each with a fingerprint of its first row's
/// earning columns ([`EARNING_COLUMNS`]): 64 bits, not the row, so the
/// table of millions of IDs stays small. GUIDs (the usual case) are keyed
/// by their value alone (as two words: no 16-byte alignment padding).
/// Randomly seeded: IDs and values come from the file, and a fixed seed
/// would let a crafted file collide them; only membership and equality are
/// asked, never order.
struct Seen {
    guids: HashMap<[u64; 2], u64, foldhash::fast::RandomState>,
    other: HashMap<IdKey, u64, foldhash::fast::RandomState>,
    fingerprints: foldhash::quality::RandomState,
    scratch: String,
}

/// What [`Seen::insert`] finds.
#[derive(Debug, PartialEq, Eq)]
enum Repeat {
    /// The first row of its `earningId`.
    New,
    /// The same earning again.
    Same,
    /// Other earning columns than the first row's.
    Differs,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            guids: HashMap::default(),
            other: HashMap::default(),
            fingerprints: foldhash::quality::RandomState::default(),
            scratch: String::new(),
        }
    }

    /// Room for about `n` more GUIDs (a hint: the set grows past it as
    /// needed; a reservation that fails is no error).
    fn reserve(&mut self, n: usize) {
        let _ = self.guids.try_reserve(n);
    }

    fn fingerprint(&mut self, e: &EarningRow<'_>) -> u64 {
        let mut h = self.fingerprints.build_hasher();
        for (_, v) in earning_columns(e) {
            v.hash_into(&mut h, &mut self.scratch);
        }
        h.finish()
    }

    /// Notes the row `e` of `earningId` key `k`: whether it is the first
    /// of its ID, a repeat of the same earning, or another one.
    fn insert(&mut self, k: IdKey, e: &EarningRow<'_>) -> Repeat {
        use std::collections::hash_map::Entry;
        let fp = self.fingerprint(e);
        let known = match k {
            IdKey::Guid(v) => match self.guids.entry([(v >> 64) as u64, v as u64]) {
                Entry::Vacant(s) => {
                    s.insert(fp);
                    return Repeat::New;
                }
                Entry::Occupied(o) => *o.get(),
            },
            k => match self.other.entry(k) {
                Entry::Vacant(s) => {
                    s.insert(fp);
                    return Repeat::New;
                }
                Entry::Occupied(o) => *o.get(),
            },
        };
        if known == fp {
            Repeat::Same
        } else {
            Repeat::Differs
        }
    }
}

/// A row that repeats an `earningId` with other earning columns, while the
/// files are read: its reject is completed once the first row of its ID is
/// found again ([`name_conflicts`]).
struct Conflict {
    /// Index of its reject in [`EarningsRead::rejects`].
    reject: usize,
    earning_id: String,
    key: IdKey,
    columns: Owned,
}

/// What the tie-out needs of the earnings files before their rows are read,
/// from their first 64 KiB alone (see [`heads`]).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Heads {
    /// Whether some file has an `invoiceNumber` column, and whether some has
    /// a `productId` column (the tie-out's grain leaves out what no file can
    /// carry).
    pub columns: (bool, bool),
    /// About how many rows the files hold (see [`super::rows_hint`]).
    pub rows_hint: usize,
}

/// The [`Heads`] of `files`, each file's head read once. A file whose header
/// cannot be read counts as having both columns ([`read_earnings`] reports
/// its error) and no rows.
pub fn heads(files: &[InputFile]) -> Heads {
    let mut out = Heads::default();
    for file in files {
        let Ok(head) = super::head(&file.path) else {
            out.columns = (true, true);
            continue;
        };
        out.rows_hint = out
            .rows_hint
            .saturating_add(super::rows_hint(file.size, &head));
        let layout = read_header(&file.display, &head).and_then(|header| {
            EarningsLayout::from_header(&file.display, &header.fields, header.delimiter)
        });
        match layout {
            Ok(l) => {
                out.columns.0 |= l.has(EField::InvoiceNumber);
                out.columns.1 |= l.has(EField::ProductId);
            }
            Err(_) => out.columns = (true, true),
        }
    }
    out
}

/// Reads every earnings file in order and hands each usable, first-seen row to
/// `f`; rejects and counts are returned.
///
/// A row whose `earningId` was read before is counted once (a duplicate)
/// when its earning columns ([`EARNING_COLUMNS`]) are those of the first row
/// of the ID, and rejected otherwise, naming the first differing column,
/// the first row (file and line) and its value there. Only a fingerprint of
/// the first row is kept per ID; the first rows of the (rare) rejected
/// repeats are read again at the end for their values.
pub fn read_earnings(
    files: &[InputFile],
    f: &mut dyn FnMut(&EarningRow<'_>),
) -> Result<EarningsRead, Fatal> {
    let mut out = EarningsRead::default();
    let mut seen = Seen::new();
    let mut conflicts: Vec<Conflict> = Vec::new();
    let mut rejects = std::mem::take(&mut out.rejects);
    let mut rows_read = 0u64;
    let mut duplicates = 0u64;
    out.files = read_rows(files, Hashing::Sha256, &mut |event| {
        let row = match event {
            // Sized once for the file's rows: growing a set of millions of
            // IDs moves every ID at each doubling.
            Read::File(layout, rows) => {
                if layout.has(EField::EarningId) {
                    seen.reserve(rows);
                }
                return true;
            }
            Read::Row(row) => row,
        };
        rows_read += 1;
        match row {
            Err(r) => rejects.push(r),
            Ok(e) if e.earning_id.is_empty() => f(e),
            Ok(e) => {
                match seen.insert(id_key(e.earning_id), e) {
                    Repeat::New => f(e),
                    Repeat::Same => duplicates += 1,
                    Repeat::Differs => {
                        conflicts.push(Conflict {
                            reject: rejects.len(),
                            earning_id: e.earning_id.to_string(),
                            key: id_key(e.earning_id),
                            columns: owned_columns(e),
                        });
                        // Completed by `name_conflicts`.
                        rejects.push(EarningsReject {
                            file: files[e.file as usize].display.clone(),
                            line: e.line,
                            column: String::new(),
                            value: String::new(),
                            reason: String::new(),
                        });
                    }
                }
            }
        }
        true
    })?;
    drop(seen);
    out.rows_read = rows_read;
    out.duplicates = duplicates;
    out.rejects = rejects;
    if !conflicts.is_empty() {
        name_conflicts(files, &conflicts, &mut out.rejects)?;
    }
    Ok(out)
}

/// Completes the rejects of `conflicts`: reads the files again up to the
/// first row of each conflict's `earningId` (the row that was counted) and
/// names the first earning column that differs from it.
fn name_conflicts(
    files: &[InputFile],
    conflicts: &[Conflict],
    rejects: &mut [EarningsReject],
) -> Result<(), Fatal> {
    let mut first: HashMap<IdKey, Option<(u32, u64, Owned)>> =
        conflicts.iter().map(|c| (c.key.clone(), None)).collect();
    let mut missing = first.len();
    read_rows(files, Hashing::Skip, &mut |event| {
        if let Read::Row(Ok(e)) = event {
            if !e.earning_id.is_empty() {
                if let Some(slot @ None) = first.get_mut(&id_key(e.earning_id)) {
                    *slot = Some((e.file, e.line, owned_columns(e)));
                    missing -= 1;
                }
            }
        }
        missing > 0
    })?;
    for c in conflicts {
        let r = &mut rejects[c.reject];
        let found = first.get(&c.key).and_then(|f| f.as_ref());
        let differs = found.and_then(|(file, line, cols)| {
            cols.iter()
                .zip(&c.columns)
                .find(|(a, b)| a.1 != b.1)
                .map(|(a, b)| (*file, *line, a, b))
        });
        match differs {
            Some((file, line, (column, _, was), (_, _, is))) => {
                r.column = column.to_string();
                r.value = is.clone();
                r.reason = format!(
                    "repeats earningId {} of {}:{}, whose {column} is {was}: a repeat of one \
                     earning (the Growth report writes it on every transaction row it pays \
                     for) has the same {column}, so this row is another earning under a used \
                     earningId and is not counted (the first row is); ask Microsoft which \
                     is right",
                    c.earning_id, files[file as usize].display, line,
                );
            }
            // The first row could not be found again alike (the file changed
            // while it was read): the columns compared are named.
            None => {
                r.column = "(row)".into();
                r.value = c.earning_id.clone();
                r.reason = format!(
                    "repeats earningId {} of an earlier row with other values in one of {}, \
                     so it is another earning under a used earningId and is not counted \
                     (the earlier row is; a file changed while it was read?)",
                    c.earning_id,
                    EARNING_COLUMNS.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// What [`read_rows`] hands on.
enum Read<'r, 'a> {
    /// A file's header was read: its layout, and about how many rows it holds.
    File(&'r EarningsLayout, usize),
    /// A row, usable or a reject.
    Row(Result<&'r EarningRow<'a>, EarningsReject>),
}

/// Reads every row of every file in order and hands each file's layout,
/// then its rows, to `f`, which returns `false` to stop reading. Returns
/// each file's name and digest (of the files read to the end).
fn read_rows(
    files: &[InputFile],
    hashing: Hashing,
    f: &mut dyn FnMut(Read<'_, '_>) -> bool,
) -> Result<Vec<(String, super::FileDigest)>, Fatal> {
    let mut out = Vec::with_capacity(files.len());
    let mut go = true;
    for (idx, file) in files.iter().enumerate() {
        if !go {
            break;
        }
        let head = super::head(&file.path)?;
        // The delimiter is sniffed from the header line (`,` `;` or TAB, the
        // most frequent outside quotes), whatever the extension says.
        let header = read_header(&file.display, &head)?;
        let layout = EarningsLayout::from_header(&file.display, &header.fields, header.delimiter)?;
        if !f(Read::File(&layout, super::rows_hint(file.size, &head))) {
            break;
        }
        let n_fields = header.fields.len();
        let fmt = RecordFormat {
            delimiter: header.delimiter,
            header: &header.fields,
            max_record: MAX_RECORD_BYTES,
        };
        let mut rec = simd_csv::ByteRecord::new();
        let mut spare: Vec<&'static str> = Vec::new();
        // The chunk just read, handed back to the reader: a fresh 8 MiB
        // block per chunk would be mapped, faulted in and zeroed each time.
        let spare_chunk: Cell<Option<Vec<u8>>> = Cell::new(None);
        let reject = |line: u64, column: String, value: String, reason: String| EarningsReject {
            file: file.display.clone(),
            line,
            column,
            value,
            reason,
        };
        let digest = read_chunks(
            idx,
            file,
            &header,
            CHUNK,
            hashing,
            || {
                spare_chunk
                    .take()
                    .unwrap_or_else(|| super::chunk_buffer(CHUNK))
            },
            |chunk| {
                for_each_row(
                    &chunk.data,
                    chunk.first_line,
                    chunk.kind,
                    fmt,
                    &mut rec,
                    &mut |row| {
                        if !go {
                            return;
                        }
                        // A row of more or fewer fields than the header is not
                        // read field by field: its values would sit under other
                        // columns' names (an unquoted comma in a name shifts a
                        // subscription into the invoice number), and a row cut
                        // short would lose its customer and pass as an
                        // adjustment.
                        let record = row.record.and_then(|r| match r.len() {
                            n if n == n_fields => Ok(r),
                            _ => Err(LineProblem::field_count_of(r, n_fields)),
                        });
                        let r = match record {
                            Err(p) => {
                                go = f(Read::Row(Err(reject(
                                    row.line, p.column, p.value, p.reason,
                                ))));
                                return;
                            }
                            Ok(r) => r,
                        };
                        // Borrowed, trimmed fields: nothing is copied per field,
                        // and the vector of one row serves the next.
                        let mut text: Vec<&str> = crate::util::recycle(std::mem::take(&mut spare));
                        // The row's bytes checked as UTF-8 once, each field a
                        // whole piece of that text (as the ledger reader does);
                        // field by field only when that fails, to name the field.
                        match record_text(r) {
                            Some(whole) => text.extend(
                                r.iter()
                                    .map(|f| crate::text::trim(within(whole, f).unwrap_or(""))),
                            ),
                            None => {
                                for field in r.iter() {
                                    match std::str::from_utf8(field) {
                                        Ok(s) => text.push(crate::text::trim(s)),
                                        Err(_) => {
                                            go = f(Read::Row(Err(reject(
                                                row.line,
                                                "(row)".into(),
                                                String::from_utf8_lossy(field).into_owned(),
                                                "not valid UTF-8 text".into(),
                                            ))));
                                            return;
                                        }
                                    }
                                }
                            }
                        }
                        go = match parse_row(&layout, idx as u32, row.line, &text) {
                            Err((column, value, reason)) => {
                                let (column, value, reason) =
                                    match LineProblem::header_again(r.iter(), &header.fields) {
                                        Some(p) => (p.column, p.value, p.reason),
                                        None => (column.to_string(), value, reason),
                                    };
                                f(Read::Row(Err(reject(row.line, column, value, reason))))
                            }
                            Ok(e) => f(Read::Row(Ok(&e))),
                        };
                        spare = crate::util::recycle(text);
                    },
                );
                let mut data = chunk.data;
                data.clear();
                spare_chunk.set(Some(data));
                go
            },
        )?;
        out.push((file.display.clone(), digest));
    }
    Ok(out)
}

type RowError = (&'static str, String, String);

fn parse_row<'a>(
    l: &EarningsLayout,
    file: u32,
    line: u64,
    t: &[&'a str],
) -> Result<EarningRow<'a>, RowError> {
    let get = |f: EField| -> &'a str {
        l.pos[f as usize]
            .and_then(|i| t.get(i))
            .copied()
            .unwrap_or("")
    };
    let name = |f: EField| -> &'static str {
        match f {
            EField::ParticipantId => "participantId",
            EField::EarningParticipantId => "earningParticipantId",
            EField::TransactionDate => "transactionDate",
            EField::EarningDate => "earningDate",
            EField::TransactionCurrency => "transactionCurrency",
            EField::EarningAmount => "earningAmount",
            EField::EarningRate => "earningRate",
            _ => "",
        }
    };
    let (participant_column, participant_id) = match get(EField::ParticipantId) {
        "" => (
            name(EField::EarningParticipantId),
            get(EField::EarningParticipantId),
        ),
        p => (name(EField::ParticipantId), p),
    };
    if participant_id.is_empty() {
        return Err((
            name(EField::ParticipantId),
            String::new(),
            "no partner: participantId and earningParticipantId are both empty".into(),
        ));
    }
    // What earnings are matched and de-duplicated on.
    let ids = [
        (participant_column, participant_id),
        ("earningId", get(EField::EarningId)),
        ("customerTenantId", get(EField::Customer)),
        ("subscriptionId", get(EField::SubscriptionId)),
        ("invoiceNumber", get(EField::InvoiceNumber)),
        ("productId", get(EField::ProductId)),
    ];
    for (column, id) in ids {
        if let Some(why) = super::id_problem(id) {
            return Err((column, id.to_string(), why));
        }
    }
    // What the tie-out shows and maps programs by.
    let texts = [
        ("participantName", EField::ParticipantName),
        ("programName", EField::ProgramName),
        ("engagementName", EField::EngagementName),
        ("lever", EField::Lever),
        ("partnerAssociation", EField::PartnerAssociation),
        ("customerName", EField::CustomerName),
        ("reasonCode", EField::ReasonCode),
        ("earningType", EField::EarningType),
    ];
    for (column, f) in texts {
        if let Some(why) = super::text_problem(get(f)) {
            return Err((column, get(f).to_string(), why));
        }
    }
    let (date_field, date_text) = match get(EField::TransactionDate) {
        "" => (EField::EarningDate, get(EField::EarningDate)),
        d => (EField::TransactionDate, d),
    };
    let date = parse_date(date_text).map_err(|e| {
        (
            name(date_field),
            date_text.to_string(),
            e.reason(date_text, "YYYY-MM-DD, an ISO timestamp or M/D/YYYY"),
        )
    })?;
    let cur_text = get(EField::TransactionCurrency);
    let currency = Currency::parse(cur_text).ok_or_else(|| {
        (
            name(EField::TransactionCurrency),
            cur_text.to_string(),
            "not an ISO 4217 currency code".to_string(),
        )
    })?;
    // A `;` file is an Excel re-save: its numbers are read as every `;`
    // input's (decimal comma or point, `1.234` refused as ambiguous).
    let semicolon = l.delimiter == b';';
    let amount_text = get(EField::EarningAmount);
    let amount = parse_amount(amount_text, semicolon).map_err(|e| {
        (
            name(EField::EarningAmount),
            amount_text.to_string(),
            e.reason("not an exact decimal amount"),
        )
    })?;
    let rate_text = get(EField::EarningRate);
    // A percentage, with or without one `%` after it.
    let rate_err = |why: String| (name(EField::EarningRate), rate_text.to_string(), why);
    let (number, percent_sign) = match rate_text.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (rate_text, false),
    };
    let rate = match number {
        "" if !percent_sign => None,
        "" => return Err(rate_err("a '%' without a number".into())),
        r => {
            let pct = parse_amount(r, semicolon)
                .map_err(|e| rate_err(e.reason("not a decimal percentage")))?;
            // Hundredths by moving the decimal point: exact, or refused when
            // the rate would need more decimals than a decimal holds (never
            // rounded to a nearby rate).
            let mut rate = pct;
            rate.set_scale(pct.scale() + 2).map_err(|_| {
                rate_err(format!(
                    "as a fraction the rate needs more than {} decimals",
                    Decimal::MAX_SCALE
                ))
            })?;
            Some(rate.normalize())
        }
    };
    Ok(EarningRow {
        file,
        line,
        earning_id: get(EField::EarningId),
        participant_id,
        participant_column,
        participant_name: get(EField::ParticipantName),
        program_name: get(EField::ProgramName),
        engagement_name: get(EField::EngagementName),
        lever: get(EField::Lever),
        partner_association: get(EField::PartnerAssociation),
        customer_id: get(EField::Customer),
        customer_name: get(EField::CustomerName),
        subscription_id: get(EField::SubscriptionId),
        invoice_number: get(EField::InvoiceNumber),
        product_id: get(EField::ProductId),
        date,
        currency,
        amount,
        rate,
        reason_code: get(EField::ReasonCode),
        earning_type: get(EField::EarningType),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` written as `name` in `dir`, as an input file.
    fn file_in(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> InputFile {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        InputFile {
            path,
            display: name.to_string(),
            size: bytes.len() as u64,
        }
    }

    fn read(name: &str, bytes: &[u8]) -> (Vec<(u64, String, String, Decimal)>, EarningsRead) {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![file_in(&dir, name, bytes)];
        let mut rows = Vec::new();
        let r = read_earnings(&files, &mut |e| {
            rows.push((
                e.line,
                e.participant_id.to_string(),
                e.customer_id.to_string(),
                e.amount,
            ))
        })
        .unwrap();
        (rows, r)
    }

    #[test]
    fn csv_with_bom_any_column_order_extra_columns_and_e_notation() {
        let text = "\u{feff}extra,earningAmount,transactionCurrency,customerTenantId,transactionDate,participantId\r\n\
                    x,1.5E-01,EUR,C1,2026-01-05,500275\r\n\
                    y,\"2,5\",EUR,C1,2026-01-05,500275\r\n";
        let (rows, r) = read("e.csv", text.as_bytes());
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0],
            (2, "500275".into(), "C1".into(), "0.15".parse().unwrap())
        );
        assert_eq!(r.rejects.len(), 1);
        assert_eq!(r.rejects[0].line, 3);
        assert_eq!(r.rejects[0].column, "earningAmount");
        assert_eq!(r.rows_read, 2);
    }

    /// Only the same ID is a duplicate: a GUID and a number of the same
    /// value, or a GUID with its dashes moved, are other IDs.
    #[test]
    fn earning_id_keys_are_injective() {
        let same = [
            (
                "3f2b8c1e-5d4a-4e6b-9c7d-8a1f2e3b4c5d",
                "3F2B8C1E-5D4A-4E6B-9C7D-8A1F2E3B4C5D",
            ),
            ("E1", "e1"),
            ("123", "123"),
            // Beyond ASCII, folded as customer and subscription IDs are.
            ("\u{c9}X", "\u{e9}x"),
            ("M\u{dc}LLER-01", "m\u{fc}ller-01"),
        ];
        for (a, b) in same {
            assert_eq!(id_key(a), id_key(b), "{a} {b}");
        }
        let other = [
            ("80000000-0000-0000-0000-000000000005", "5"),
            ("00000000-0000-0000-0000-000000000005", "5"),
            (
                "00000000-0000-0000-0000-000000000005",
                "0000000-00000-0000-0000-000000000005",
            ),
            (
                "00000000-0000-0000-0000-000000000005",
                "00000000000000000000000000000005",
            ),
            ("0123", "123"),
            (
                "340282366920938463463374607431768211455",
                "ffffffff-ffff-ffff-ffff-ffffffffffff",
            ),
        ];
        for (a, b) in other {
            assert_ne!(id_key(a), id_key(b), "{a} {b}");
        }
        // The largest number is a number; one more is text.
        assert_eq!(
            id_key("340282366920938463463374607431768211455"),
            IdKey::Num(u128::MAX)
        );
        assert!(matches!(
            id_key("340282366920938463463374607431768211456"),
            IdKey::Text(_)
        ));
    }

    /// A row with bytes that are not UTF-8 is rejected, naming the value;
    /// the rows around it, text in other scripts and quoted fields among
    /// them, are read whole and trimmed.
    #[test]
    fn a_row_that_is_not_utf8_is_rejected_and_the_others_read() {
        let mut text = b"participantId,customerTenantId,customerName,transactionDate,transactionCurrency,earningAmount\n".to_vec();
        text.extend_from_slice(
            " 1 ,C\u{e9}1,\"M\u{fc}ller, \"\"GmbH\"\"\",2026-01-05,EUR,1\n".as_bytes(),
        );
        text.extend_from_slice(b"2,C2,Bad \xff\xfe name,2026-01-05,EUR,2\n");
        text.extend_from_slice("3,\u{65e5}\u{672c},x,2026-01-05,EUR,3\n".as_bytes());
        let (rows, r) = read("e.csv", &text);
        assert_eq!(
            rows,
            vec![
                (2, "1".into(), "C\u{e9}1".into(), Decimal::ONE),
                (4, "3".into(), "\u{65e5}\u{672c}".into(), Decimal::from(3)),
            ]
        );
        assert_eq!(r.rows_read, 3);
        assert_eq!(r.rejects.len(), 1);
        let bad = &r.rejects[0];
        assert_eq!((bad.line, bad.column.as_str()), (3, "(row)"));
        assert_eq!(bad.value, "Bad \u{fffd}\u{fffd} name");
        assert_eq!(bad.reason, "not valid UTF-8 text");
    }

    /// `0001-01-01` and `9999-12-31` have a date's form: the reject says
    /// they are outside the supported dates, naming the value.
    #[test]
    fn a_date_outside_the_supported_years_is_rejected_as_such() {
        let text = "participantId,transactionDate,transactionCurrency,earningAmount\n\
                    1,0001-01-01,EUR,1\n\
                    1,9999-12-31,EUR,2\n\
                    1,2026-02-30,EUR,3\n";
        let (rows, r) = read("e.csv", text.as_bytes());
        assert!(rows.is_empty(), "{rows:?}");
        let reasons: Vec<_> = r
            .rejects
            .iter()
            .map(|j| (j.column.as_str(), j.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        for (value, (column, reason)) in ["0001-01-01", "9999-12-31"].iter().zip(&reasons) {
            assert_eq!(*column, "transactionDate");
            assert!(
                reason.starts_with(&format!(
                    "{value} is outside the supported dates, 1900-01-01 to 2999-12-31"
                )),
                "{reason}"
            );
        }
        assert!(
            reasons[2].1.starts_with("not a date (expected"),
            "{reasons:?}"
        );
    }

    /// A `;`-separated export (an Excel re-save) reads its numbers as every
    /// `;` input does: a decimal comma or point; `1.234` is refused as
    /// ambiguous, not read as 1.234 in one reader and 1234 in another.
    #[test]
    fn a_semicolon_file_reads_its_numbers_as_every_semicolon_input() {
        let text =
            "participantId;transactionDate;transactionCurrency;earningAmount;customerTenantId\n\
                    1;2026-01-05;EUR;1.234,5;C1\n\
                    2;2026-01-05;EUR;1234.5;C2\n\
                    3;2026-01-05;EUR;1.234;C3\n";
        let (rows, r) = read("e.csv", text.as_bytes());
        let amounts: Vec<Decimal> = rows.iter().map(|r| r.3).collect();
        assert_eq!(amounts, [Decimal::new(12345, 1), Decimal::new(12345, 1)]);
        assert_eq!(r.rejects.len(), 1);
        assert!(
            r.rejects[0].reason.starts_with("ambiguous"),
            "{:?}",
            r.rejects
        );
    }

    #[test]
    fn a_row_of_more_or_fewer_fields_than_the_header_is_rejected() {
        let text = "participantId,transactionDate,transactionCurrency,earningAmount,customerName,customerTenantId\n\
                    1,2026-01-05,EUR,1,\"Contoso, Ltd\",C1\n\
                    2,2026-01-05,EUR,2,Contoso, Ltd,C2\n\
                    ,,,\n\
                    3,2026-01-05,EUR,3,x,C3\n\
                    4,2026-01-05,EUR,4";
        let (rows, r) = read("e.csv", text.as_bytes());
        assert_eq!(
            rows,
            vec![
                (2, "1".into(), "C1".into(), Decimal::ONE),
                (5, "3".into(), "C3".into(), Decimal::from(3)),
            ]
        );
        assert_eq!(r.rows_read, 5);
        let rejects: Vec<(u64, &str, &str)> = r
            .rejects
            .iter()
            .map(|j| (j.line, j.column.as_str(), j.reason.as_str()))
            .collect();
        assert_eq!(
            rejects,
            vec![
                // An unquoted comma in a name: the customer one column off.
                (3, "(row)", "has 7 fields, the header has 6"),
                (4, "(row)", "has 4 fields, the header has 6"),
                // A last line cut short: without its customer it would have
                // passed as an adjustment.
                (6, "(row)", "has 4 fields, the header has 6"),
            ]
        );
    }

    #[test]
    fn tsv_and_dedupe_by_earning_id() {
        let text = "earningId\tparticipantId\ttransactionDate\ttransactionCurrency\tearningAmount\tearningRate\n\
                    E1\t1\t11/3/2025\tUSD\t4\t4\n\
                    E1\t1\t11/3/2025\tUSD\t4\t4\n\
                    e1\t1\t11/3/2025\tUSD\t4\t4\n\
                    3f2b8c1e-5d4a-4e6b-9c7d-8a1f2e3b4c5d\t1\t2025-11-03\tUSD\t1\t\n\
                    3F2B8C1E-5D4A-4E6B-9C7D-8A1F2E3B4C5D\t1\t2025-11-03\tUSD\t1\t\n\
                    \t1\t2025-11-03\tUSD\t1\t\n\
                    \t1\t2025-11-03\tUSD\t1\t\n";
        let (rows, r) = read("e.tsv", text.as_bytes());
        assert_eq!(rows.len(), 4, "{rows:?}");
        assert_eq!(r.duplicates, 3);
        assert_eq!(r.rows_read, 7);
    }

    /// Reads `files` (name, bytes) in order: the lines handed on, and what
    /// was counted.
    fn read_all(files: &[(&str, &str)]) -> (Vec<u64>, EarningsRead) {
        let dir = tempfile::tempdir().unwrap();
        let inputs: Vec<InputFile> = files
            .iter()
            .map(|(name, text)| file_in(&dir, name, text.as_bytes()))
            .collect();
        let mut lines = Vec::new();
        let r = read_earnings(&inputs, &mut |e| lines.push(e.line)).unwrap();
        (lines, r)
    }

    /// A repeat of an earning (the Growth report's: one row per transaction,
    /// the earning's columns alike) is counted once; a row that repeats an
    /// `earningId` with another amount, partner or program label is another
    /// earning under that ID: rejected, naming the first differing column,
    /// the first row and its value there. Each is compared with the first
    /// row, the one counted.
    #[test]
    fn a_repeat_with_other_earning_columns_is_rejected_naming_the_first_row() {
        let text = "earningId,participantId,programName,lever,partnerAssociation,transactionDate,transactionCurrency,earningRate,earningAmount,customerTenantId,subscriptionId,invoiceNumber,transactionId\n\
                    E1,500275,CSP,Core,DPOR,2025-11-01,EUR,4,80.00,C1,S1,G1,T1\n\
                    E1,500275,CSP,Core,DPOR,2025-11-20,EUR,4,80.00,C2,S2,G2,T2\n\
                    e1,P500275,CSP,Core,DPOR,2025-11-01,EUR,4,80.00,C1,S1,G1,T3\n\
                    E1,500275,CSP,Core,DPOR,2025-11-01,EUR,4,999.00,C1,S1,G1,T4\n\
                    E1,500275,csp,CORE,dpor,2025-12-01,eur,4.0 %,8.0E+01,C3,,,T5\n\
                    E1,500275,CSP,Core,PAL,2025-11-01,EUR,4,80.00,C1,S1,G1,T6\n\
                    E2,500275,CSP,Core,DPOR,2025-11-01,EUR,4,5.00,C1,S1,G1,T7\n";
        let (lines, r) = read_all(&[("e.csv", text)]);
        // Line 3 (other transaction, same earning) and line 6 (the same
        // earning written otherwise) are repeats.
        assert_eq!(lines, [2, 8]);
        assert_eq!((r.rows_read, r.duplicates), (7, 2));
        let rejects: Vec<(u64, &str, &str)> = r
            .rejects
            .iter()
            .map(|j| (j.line, j.column.as_str(), j.value.as_str()))
            .collect();
        assert_eq!(
            rejects,
            [
                (4, "participantId", "P500275"),
                (5, "earningAmount", "999.00"),
                (7, "partnerAssociation", "PAL"),
            ]
        );
        assert!(
            r.rejects[1]
                .reason
                .starts_with("repeats earningId E1 of e.csv:2, whose earningAmount is 80.00: "),
            "{}",
            r.rejects[1].reason
        );
        assert!(r.rejects[2]
            .reason
            .contains("whose partnerAssociation is DPOR"));
        // Nothing lost: every row is handed on, a duplicate or a reject.
        assert_eq!(
            r.rows_read,
            lines.len() as u64 + r.duplicates + r.rejects.len() as u64
        );
    }

    /// Across files, and in a TSV with its columns in another order: the
    /// first row named is in the other file.
    #[test]
    fn a_conflicting_repeat_in_another_file_names_the_first_file() {
        let csv = "earningId,participantId,transactionDate,transactionCurrency,earningRate,earningAmount\n\
                   x,1,2026-01-01,EUR,1,1\n\
                   3f2b8c1e-5d4a-4e6b-9c7d-8a1f2e3b4c5d,1,2026-01-01,EUR,4,4\n";
        let tsv = "earningAmount\tearningRate\ttransactionCurrency\ttransactionDate\tparticipantId\tearningId\n\
                   4\t4\tEUR\t2026-02-01\t1\t3F2B8C1E-5D4A-4E6B-9C7D-8A1F2E3B4C5D\n\
                   4\t3.75\tEUR\t2026-01-01\t1\t3f2b8c1e-5d4a-4e6b-9c7d-8a1f2e3b4c5d\n\
                   4\t4\tUSD\t2026-01-01\t1\t3f2b8c1e-5d4a-4e6b-9c7d-8a1f2e3b4c5d\n";
        let (lines, r) = read_all(&[("a.csv", csv), ("b.tsv", tsv)]);
        assert_eq!(lines, [2, 3]);
        assert_eq!((r.rows_read, r.duplicates), (5, 1));
        let rejects: Vec<(&str, u64, &str, &str)> = r
            .rejects
            .iter()
            .map(|j| (j.file.as_str(), j.line, j.column.as_str(), j.value.as_str()))
            .collect();
        assert_eq!(
            rejects,
            [
                ("b.tsv", 3, "earningRate", "3.75"),
                ("b.tsv", 4, "transactionCurrency", "USD"),
            ]
        );
        assert!(
            r.rejects[0]
                .reason
                .contains("of a.csv:3, whose earningRate is 4:"),
            "{}",
            r.rejects[0].reason
        );
    }

    /// An `earningRate` is a percentage with at most one `%`, made a fraction
    /// exactly: one that would need more than 28 decimals is rejected, not
    /// rounded (`4.0000000000000000000000000001` was 0.04, a match).
    #[test]
    fn earning_rates_are_exact_or_rejected() {
        let text = "earningId,participantId,transactionDate,transactionCurrency,earningAmount,earningRate\n\
                    e1,1,2026-01-01,EUR,3,4\n\
                    e2,1,2026-01-01,EUR,3,4 %\n\
                    e3,1,2026-01-01,EUR,3,0.0000000000000000000000000001\n\
                    e4,1,2026-01-01,EUR,3,4.0000000000000000000000000001\n\
                    e5,1,2026-01-01,EUR,3,4%%%\n\
                    e6,1,2026-01-01,EUR,3,%\n\
                    e7,1,2026-01-01,EUR,3,12.5%\n";
        let dir = tempfile::tempdir().unwrap();
        let files = vec![file_in(&dir, "e.csv", text.as_bytes())];
        let mut rates = Vec::new();
        let r = read_earnings(&files, &mut |e| rates.push(e.rate.map(|r| r.to_string()))).unwrap();
        assert_eq!(
            rates,
            [
                Some("0.04".into()),
                Some("0.04".into()),
                Some("0.125".into())
            ]
        );
        let refused: Vec<_> = r
            .rejects
            .iter()
            .map(|j| (j.line, j.column.as_str()))
            .collect();
        assert_eq!(
            refused,
            [
                (4, "earningRate"),
                (5, "earningRate"),
                (6, "earningRate"),
                (7, "earningRate")
            ]
        );
        assert!(
            r.rejects[0].reason.contains("more than 28 decimals"),
            "{:?}",
            r.rejects
        );
    }

    /// A zero-width space after an `earningId` would make a repeat of an
    /// earning another earning (paid counted twice): the row is rejected,
    /// naming the column and the character, as a control character in a
    /// tenant ID.
    #[test]
    fn ids_with_hidden_characters_are_rejected() {
        let text = "earningId,participantId,transactionDate,transactionCurrency,earningAmount,customerTenantId\n\
                    e1,1,2026-01-01,EUR,3,c1\n\
                    e1\u{200B},1,2026-01-01,EUR,3,c1\n\
                    e2,1,2026-01-01,EUR,3,c1\u{7f}\n";
        let (rows, r) = read("e.csv", text.as_bytes());
        assert_eq!((r.rows_read, rows.len(), r.rejects.len()), (3, 1, 2));
        let named: Vec<_> = r
            .rejects
            .iter()
            .map(|j| (j.line, j.column.as_str(), j.reason.contains("U+200B")))
            .collect();
        assert_eq!(
            named,
            [(3, "earningId", true), (4, "customerTenantId", false)]
        );
        assert!(r.rejects[1].reason.contains("U+007F"), "{:?}", r.rejects);
    }

    /// A name or program text holding a control character (an escape
    /// sequence, a NUL of a damaged file) is rejected naming the column; a
    /// right-to-left mark in a name is kept.
    #[test]
    fn texts_with_control_characters_are_rejected() {
        let text = "earningId,participantId,participantName,programName,transactionDate,transactionCurrency,earningAmount,customerTenantId\n\
                    e1,1,Contoso\u{200F},CSP,2026-01-01,EUR,3,c1\n\
                    e2,1,Contoso,CSP\u{1b}[0m,2026-01-01,EUR,3,c1\n\
                    e3,1,Con\u{8}toso,CSP,2026-01-01,EUR,3,c1\n";
        let (rows, r) = read("e.csv", text.as_bytes());
        assert_eq!((r.rows_read, rows.len(), r.rejects.len()), (3, 1, 2));
        let named: Vec<_> = r
            .rejects
            .iter()
            .map(|j| (j.line, j.column.as_str()))
            .collect();
        assert_eq!(named, [(3, "programName"), (4, "participantName")]);
        assert!(r.rejects[0].reason.contains("U+001B"), "{:?}", r.rejects);
    }

    #[test]
    fn missing_column_is_named() {
        let text = "participantId,transactionDate,earningAmount\n1,2026-01-01,1\n";
        let dir = tempfile::tempdir().unwrap();
        let files = vec![file_in(&dir, "e.csv", text.as_bytes())];
        let e = read_earnings(&files, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("transactionCurrency"), "{e}");
    }

    #[test]
    fn a_bare_cr_between_rows_is_one_rejected_row_that_says_so() {
        let text = "participantId,transactionDate,transactionCurrency,earningAmount\r\n\
                    1,2026-01-01,EUR,3\r\n1,2026-02-01,EUR,4\r1,2026-03-01,EUR,5\r\n";
        let dir = tempfile::tempdir().unwrap();
        let files = vec![file_in(&dir, "e.csv", text.as_bytes())];
        let mut read = 0;
        let got = read_earnings(&files, &mut |_| read += 1).unwrap();
        assert_eq!((got.rows_read, read, got.rejects.len()), (2, 1, 1));
        assert_eq!(got.rejects[0].line, 3);
        assert!(
            got.rejects[0]
                .reason
                .contains("carriage return (CR) without a line feed"),
            "{}",
            got.rejects[0].reason
        );
    }

    #[test]
    fn rate_is_a_percentage() {
        let text = "participantId,transactionDate,transactionCurrency,earningAmount,earningRate\n1,2026-01-01,EUR,3,3.75\n";
        let dir = tempfile::tempdir().unwrap();
        let files = vec![file_in(&dir, "e.csv", text.as_bytes())];
        let mut rate = None;
        read_earnings(&files, &mut |e| rate = e.rate).unwrap();
        assert_eq!(rate, Some("0.0375".parse().unwrap()));
    }

    #[test]
    fn the_grain_columns_are_known_from_the_headers() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| file_in(&dir, name, text.as_bytes());
        let base = "participantId,transactionDate,transactionCurrency,earningAmount";
        let plain = file("a.csv", &format!("{base}\n1,2026-01-01,EUR,3\n"));
        let invoiced = file(
            "b.tsv",
            &format!("{}\tInvoice_Number\n", base.replace(',', "\t")),
        );
        let both = file(
            "c.csv",
            &format!("\u{feff}{base},productId,invoiceNumber\n"),
        );
        let broken = file("d.csv", "no,header,here\n");
        let grain_columns = |files: &[InputFile]| heads(files).columns;
        assert_eq!(grain_columns(std::slice::from_ref(&plain)), (false, false));
        assert_eq!(grain_columns(&[plain.clone(), invoiced]), (true, false));
        assert_eq!(grain_columns(&[both]), (true, true));
        // Unreadable: the reader reports it; nothing is left out meanwhile.
        assert_eq!(grain_columns(&[plain, broken]), (true, true));
    }
}
