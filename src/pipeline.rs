//! The run: load inputs, stream billing chunks through parallel workers
//! (parse -> attribute -> accrue -> fold), hand each chunk's rows to a
//! [`Sink`] in input order; the groups are shared by the workers.
//!
//! ```text
//! reader thread --chunks--> N workers --rows--> collector (this thread)
//!      ^                   (adding to one            |  reorders by sequence,
//!      |                    shared set of groups)    |  counts, writes rows
//!      +------------- permits (bounded) -------------+
//! ```
//! At most `2 x threads + 2` chunks are in memory at once, whatever the input
//! size. With one thread there are no other threads: each chunk is read,
//! processed and written in turn (`stream_inline`). The output does not
//! depend on the number of threads: every chunk is
//! processed the same way, rows are written in input order, and sums are
//! exact and order-free (see [`crate::fold`]).
//!
//! With [`StreamSettings::spill`], the collector writes the shared groups to
//! a sorted run file whenever they pass the budget, after a chunk
//! ([`crate::spill`]); the runs are merged after the stream.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::bounded;
use rust_decimal::Decimal;

use crate::accrue::{accrue_observation, Accrual, Context, Outcome, Reason, Scratch};
use crate::attain::{add_paid_seats, AttainmentTable, PaidSeats};
use crate::attribute::DesignationIndex;
use crate::config::{parse_rules, Rules};
use crate::csv_text::RowBuf;
use crate::dates::Period;
use crate::error::Fatal;
use crate::fold::{CountsReport, DetailKey, FileCounts, Fold, SharedDetails, Sums};
use crate::ingest::billing::Field;
use crate::ingest::designations::{parse_designations, Designations, Reject};
use crate::ingest::usage::UsageObs;
use crate::ingest::{self, Chunk, FileDigest, InputFile, OpenedBilling};
use crate::ledger::{
    write_ledger_row, write_not_eligible_row, write_reject_row, LedgerRow, NotEligibleRow,
    RejectRow,
};
use crate::money::ExactArith;
use crate::spill::Runs;
use crate::util::recycle;

/// Everything a run reads before streaming billing lines.
pub struct Inputs {
    pub rules: Rules,
    pub rules_path: PathBuf,
    pub rules_digest: FileDigest,
    pub designations: Designations,
    pub designations_display: String,
    pub designations_digest: FileDigest,
    pub index: DesignationIndex,
    pub files: Vec<InputFile>,
    pub opened: Vec<OpenedBilling>,
    /// `--usage` files, loaded by [`prepare_usage`] (empty without).
    pub usage: crate::ingest::usage::UsageInput,
    /// Attainment per tenant, workload and month, from `usage`.
    pub attainment: AttainmentTable,
    /// Write each accrued billing line's source keys (`source-keys.csv`,
    /// `run --history`) so that `close` records them for later credits.
    pub source_keys: bool,
    /// `run --history`: the closed charges credit lines are looked up in
    /// (a credit of a closed charge reverses its recorded accruals).
    pub closed: Option<Box<dyn crate::history::reverse::ClosedCharges>>,
}

impl Inputs {
    /// What the partner usage views read (see [`crate::attain::partner_usage`]).
    pub fn usage_view(&self) -> crate::attain::UsageView<'_> {
        crate::attain::UsageView {
            table: &self.attainment,
            designations: &self.index,
            customer_names: &self.usage.customer_names,
            settings: &self.rules.usage,
        }
    }
}

/// Reads rules and designations and opens every billing file's header, so that
/// a bad rules file or a billing file of unknown format fails before any work.
pub fn load_inputs(
    billing: &[PathBuf],
    designations: &std::path::Path,
    rules: &std::path::Path,
) -> Result<Inputs, Fatal> {
    // Read once: the digest in the manifest is of the very bytes parsed (a
    // rules file saved again between a parse and a second read for the
    // digest would be recorded as rules it did not run with).
    let rules_bytes = ingest::read_limited(rules, ingest::limits::RULES, "rules")?;
    let rules_digest = FileDigest {
        sha256: ingest::sha256_hex(&rules_bytes),
        bytes: rules_bytes.len() as u64,
    };
    let rules_text = ingest::text_of(rules, rules_bytes)?;
    let parsed_rules = parse_rules(&rules_text).map_err(|e| Fatal::Config {
        file: rules.display().to_string(),
        message: e.to_string(),
    })?;
    let d_bytes = ingest::read_limited(designations, ingest::limits::DESIGNATIONS, "designations")?;
    let designations_display = designations.to_string_lossy().into_owned();
    let mut parsed = parse_designations(&designations_display, &d_bytes)?;
    let designations_digest = FileDigest {
        sha256: ingest::sha256_hex(&d_bytes),
        bytes: d_bytes.len() as u64,
    };
    let files = ingest::discover_billing(billing)?;
    let opened = files
        .iter()
        .map(ingest::open_billing)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Inputs {
        // The index keeps the rows (held once: 37,500 designations are ~13 MB).
        index: DesignationIndex::new(std::mem::take(&mut parsed.rows)),
        rules: parsed_rules,
        rules_path: rules.to_path_buf(),
        rules_digest,
        designations: parsed,
        designations_display,
        designations_digest,
        files,
        opened,
        usage: Default::default(),
        attainment: Default::default(),
        source_keys: false,
        closed: None,
    })
}

/// Loads the `--usage` files into `inputs` and builds the attainment table
/// (with a billing pre-pass for paid seats when a Graph export, which has
/// none, is among them).
pub fn prepare_usage(
    inputs: &mut Inputs,
    usage: &[PathBuf],
    tenant_map: Option<&std::path::Path>,
    closed: &crate::attain::ClosedMarks,
) -> Result<(), Fatal> {
    let u = crate::ingest::usage::load_usage(usage, tenant_map)?;
    let pau = if u.obs.iter().any(|o| o.pau.is_none()) {
        billing_pau(&inputs.files, &inputs.opened, &inputs.rules)?
    } else {
        Default::default()
    };
    inputs.attainment = AttainmentTable::build(&u, &pau, &inputs.rules.usage.targets, closed);
    inputs.usage = u;
    Ok(())
}

/// Paid seats from the billing files ([`crate::attain::add_paid_seats`] of
/// every line), read the way the stream reads them: the same chunks, record
/// splitter and [`crate::ingest::BillingLayout::parse`]. A row the stream
/// rejects (wrong field count, a bad value) is left out here and reported by
/// the stream with its file, line and column; a `Quantity` that is not a
/// number counts no seats.
pub fn billing_pau(
    files: &[InputFile],
    opened: &[OpenedBilling],
    rules: &Rules,
) -> Result<PaidSeats, Fatal> {
    let mut out = PaidSeats::default();
    if rules.products.is_empty() {
        return Ok(out);
    }
    for (fi, (f, o)) in files.iter().zip(opened).enumerate() {
        let layout = &o.layout;
        // Paid seats are the billed quantity (`BillingLine::billable_quantity`).
        if layout.column(Field::BillableQuantity).is_none()
            && layout.column(Field::Quantity).is_none()
        {
            continue;
        }
        let scol = layout.column(Field::SkuName);
        let n = layout.header.len();
        fn text(rec: &simd_csv::ByteRecord, i: usize) -> Option<&str> {
            rec.get(i).and_then(|b| std::str::from_utf8(b).ok())
        }
        ingest::read_chunks(
            fi,
            f,
            &o.header,
            8 << 20,
            ingest::Hashing::Skip,
            Vec::new,
            |chunk| {
                let format = ingest::records::RecordFormat {
                    delimiter: layout.delimiter,
                    header: &layout.header,
                    max_record: ingest::records::MAX_RECORD_BYTES,
                };
                let mut rec = simd_csv::ByteRecord::new();
                let mut seats = |row: ingest::records::Row<'_>| {
                    let Ok(rec) = row.record else {
                        return;
                    };
                    if rec.len() != n {
                        return;
                    }
                    // A row the run rejects counts no seats either.
                    let Ok(line) = layout.parse(rec) else {
                        return;
                    };
                    let Some(q) = line.billable_quantity else {
                        return;
                    };
                    let sku = scol.and_then(|i| text(rec, i)).unwrap_or("").trim();
                    add_paid_seats(&mut out, rules, &line, sku, q);
                };
                ingest::records::for_each_row(
                    &chunk.data,
                    chunk.first_line,
                    chunk.kind,
                    format,
                    &mut rec,
                    &mut seats,
                );
                true
            },
        )?;
    }
    Ok(out)
}

/// Settings of the streaming stage.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    pub threads: usize,
    pub chunk_size: usize,
    pub period: Option<Period>,
    /// Stop (fatal) once more rows than this are rejected.
    pub max_rejects: Option<u64>,
    /// Keep what the outputs need: the statement groups and the formatted
    /// ledger and not-eligible rows. `false` for `validate`, which writes
    /// nothing and builds no statement: every line is still read, attributed,
    /// accrued and counted, and rejects are still reported.
    pub outputs: bool,
    /// Bound the memory of the statement groups by writing them to run
    /// files ([`crate::spill`]); `None` keeps them all in memory.
    pub spill: Option<SpillSettings>,
}

/// When and where the stream spills its statement groups.
#[derive(Clone, Debug)]
pub struct SpillSettings {
    /// Where the run files go (made at the first run, removed with the last).
    pub dir: PathBuf,
    /// Spill once the groups in memory are more than this, checked after
    /// each chunk: memory then holds about this many groups plus what one
    /// chunk's lines add while the others are in flight.
    pub after_groups: usize,
}

impl StreamSettings {
    /// Billing files are hashed for the manifest; without outputs there is
    /// none (`validate`), so reading does not pay for it.
    fn hashing(&self) -> ingest::Hashing {
        if self.outputs {
            ingest::Hashing::Sha256
        } else {
            ingest::Hashing::Skip
        }
    }
}

/// The rows of one chunk, already formatted, plus its fold.
#[derive(Default)]
pub struct ChunkOutput {
    pub seq: u64,
    pub bytes: u64,
    pub fold: Fold,
    pub ledger: Vec<u8>,
    pub not_eligible: Vec<u8>,
    pub rejects: Vec<u8>,
    /// The source keys of the accrued billing lines (empty unless
    /// [`Inputs::source_keys`]).
    pub keys: Vec<u8>,
    /// The first few rejects of the chunk, for the console.
    pub reject_samples: Vec<Reject>,
    pub n_rejects: u64,
    /// The chunk's credits of closed charges, in line order, each checked
    /// against the history alone: [`settle_credits`] checks them against
    /// the run's earlier credits of the same charge before the chunk's rows
    /// are written.
    pub claims: Vec<CreditClaim>,
}

/// A credit line that reversed a closed charge, as its chunk wrote it: what
/// [`settle_credits`] needs to take it back as a reject when the run's
/// earlier credits of the same charge left too little of it.
#[derive(Debug)]
pub struct CreditClaim {
    /// The charge credited (`PERIOD vVERSION FILE:LINE`).
    pub charge: String,
    /// The charge's line amount and what closed credits took from it.
    pub line_amount: Decimal,
    pub credited: Decimal,
    /// The credit line's amount (negative for a charge).
    pub credit: Decimal,
    /// The input file (index) and line of the credit.
    pub file: usize,
    pub line: u64,
    /// Its ledger and source-key rows in the chunk's buffers, and where in
    /// its rejects a reject of it goes (line order).
    pub ledger: std::ops::Range<usize>,
    pub keys: std::ops::Range<usize>,
    pub rejects_at: usize,
    /// Its groups and sums, added to the run's groups once it is settled.
    pub adds: Vec<(DetailKey, Sums)>,
    /// Its reversal rows (one per entry of `adds`, in the same order), to
    /// write again when the run's earlier credits of the same charge change
    /// what it reverses. Empty when the run writes no ledger.
    pub redo: Vec<RedoRow>,
    /// The credit line's fields its reversal rows repeat.
    pub charge_date: chrono::NaiveDate,
    pub invoice_number: String,
    pub product_id: String,
    pub currency: crate::money::Currency,
}

/// One reversal row of a [`CreditClaim`], as its worker wrote it.
#[derive(Debug)]
pub struct RedoRow {
    partner_id: String,
    customer_id: String,
    program_id: String,
    association: crate::config::Association,
    subscription_id: String,
    month: crate::dates::Month,
    /// The basis the reversed accrual recorded.
    recorded: Decimal,
    rate: Decimal,
    share: Decimal,
    reverses: String,
}

/// Writes the ledger row of one reversal of a credit line: `row`'s accrual
/// reversed by `basis` and `amount`, the credit line's file, line and
/// fields from `c`.
fn write_reversal_row(
    w: &mut RowBuf,
    file: &str,
    c: &CreditClaim,
    row: &RedoRow,
    basis: Decimal,
    amount: Decimal,
) {
    write_ledger_row(
        w,
        &LedgerRow {
            partner_id: &row.partner_id,
            customer_id: &row.customer_id,
            program_id: &row.program_id,
            association: row.association.as_str(),
            subscription_id: &row.subscription_id,
            charge_date: c.charge_date,
            accrual_month: row.month,
            source_file: file,
            source_line: c.line,
            basis_amount: basis,
            basis_min_dp: c.currency.minor_units(),
            rate: row.rate,
            share: row.share,
            accrual_amount: amount,
            currency: c.currency,
            designation_line: None,
            credited_days: None,
            charge_days: None,
            reverses: Some(&row.reverses),
            invoice_number: &c.invoice_number,
            product_id: &c.product_id,
        },
    );
}

/// A credit's reversal rows written again after the run's earlier credits of
/// the same charge took `earlier` (negative) of it, beside what closed
/// periods took: each basis is what the credits reverse together less what
/// the earlier ones reversed ([`crate::history::reverse::reversal_basis`]),
/// so the credits of one charge never reverse more than it recorded, in
/// whichever chunks they were read. The ledger bytes and each row's sums;
/// `None` when a value would exceed the largest decimal.
fn redo_reversals(
    inputs: &Inputs,
    c: &CreditClaim,
    earlier: Decimal,
) -> Option<(Vec<u8>, Vec<Sums>)> {
    let credited = c.credited.exact_add(earlier)?;
    let mut ledger = RowBuf::default();
    let mut sums = Vec::with_capacity(c.redo.len());
    for r in &c.redo {
        let basis =
            crate::history::reverse::reversal_basis(r.recorded, c.line_amount, credited, c.credit)?;
        let amount = crate::accrue::accrual_amount(basis, r.rate, r.share)?;
        write_reversal_row(
            &mut ledger,
            &inputs.files[c.file].display,
            c,
            r,
            basis,
            amount,
        );
        sums.push(Sums {
            lines: 1,
            basis: crate::fold::ExactSum::of(basis),
            accrual: crate::fold::ExactSum::of(amount),
        });
    }
    Some((ledger.buf, sums))
}

/// What the run's credits of closed charges took so far, by charge, in
/// input order (the collector's, which sees the chunks in that order).
#[derive(Debug, Default)]
pub struct CreditsInRun {
    taken: std::collections::HashMap<String, Decimal>,
}

/// Settles `out`'s credits of closed charges against the run's earlier
/// credits of the same charges (`taken`), in input order: a credit that
/// fits what is left is kept (its groups are added to `details`); one that
/// does not becomes a reject naming the charge, and its ledger and
/// source-key rows are taken out of the chunk's output. Two credits of one
/// charge in one run thus never reverse more than it accrued, whichever
/// thread read them.
pub fn settle_credits(
    inputs: &Inputs,
    out: &mut ChunkOutput,
    taken: &mut CreditsInRun,
    details: &SharedDetails,
) {
    if out.claims.is_empty() {
        return;
    }
    // Ledger rows replaced (cut: replaced by nothing), source-key rows cut
    // and rejects inserted, applied from the end so that positions hold.
    let mut ledger_edits: Vec<(std::ops::Range<usize>, Vec<u8>)> = Vec::new();
    let mut cut_keys = Vec::new();
    let mut inserts: Vec<(usize, Vec<u8>)> = Vec::new();
    for mut c in std::mem::take(&mut out.claims) {
        // The first credit of a charge in the run was checked against the
        // history by its worker.
        let before = taken.taken.get(&c.charge).copied();
        let left = c
            .line_amount
            .exact_add(c.credited)
            .and_then(|l| l.exact_add(before.unwrap_or_default()));
        let fits = before.is_none()
            || left.is_some_and(|l| crate::history::reverse::fits(c.credit, c.line_amount, l));
        // Its worker reversed it against the closed credits alone: after
        // earlier credits of this run, its rows are written again.
        let redone = match before {
            Some(earlier) if fits && !c.redo.is_empty() => {
                Some(redo_reversals(inputs, &c, earlier))
            }
            _ => None,
        };
        // What the run's credits of this charge take with this one; a first
        // credit is exact (a zero term), a later sum may not be.
        // Kept when it fits, its rows could be written again, and the sum is exact.
        let kept = fits && !matches!(redone, Some(None));
        let now_taken = before.unwrap_or_default().exact_add(c.credit);
        if let Some(now_taken) = now_taken.filter(|_| kept) {
            if let Some(Some((ledger, sums))) = redone {
                ledger_edits.push((c.ledger.clone(), ledger));
                for (add, s) in c.adds.iter_mut().zip(sums) {
                    add.1 = s;
                }
            }
            taken.taken.insert(c.charge, now_taken);
            for (k, s) in c.adds {
                details.add_keyed(k, s);
            }
            continue;
        }
        let file = &inputs.files[c.file];
        let reason = match left {
            Some(left) if !fits => format!(
                "the credit {} exceeds what is left of the charge it reverses ({}: {left} of {} \
                 not yet credited, after the credits of this run before it)",
                c.credit, c.charge, c.line_amount
            ),
            _ => format!(
                "the credits of this run of {} cannot be summed: {}",
                c.charge,
                crate::money::INEXACT_SUM
            ),
        };
        let value = c.credit.to_string();
        let mut row = RowBuf::default();
        write_reject_row(
            &mut row,
            &RejectRow {
                source_file: &file.display,
                source_line: c.line,
                column: "Subtotal",
                value: &value,
                reason: &reason,
            },
        );
        inserts.push((c.rejects_at, row.buf));
        ledger_edits.push((c.ledger, Vec::new()));
        cut_keys.push(c.keys);
        let counts = &mut out.fold.files[c.file];
        counts.accrued -= 1;
        counts.rejected += 1;
        counts.credits_matched -= 1;
        counts.credits_refused += 1;
        out.n_rejects += 1;
        if out.reject_samples.len() < SAMPLES {
            out.reject_samples.push(Reject {
                file: file.display.clone(),
                line: c.line,
                column: "Subtotal".into(),
                value,
                reason,
            });
        }
    }
    for (r, rows) in ledger_edits.into_iter().rev() {
        out.ledger.splice(r, rows);
    }
    for r in cut_keys.into_iter().rev() {
        out.keys.drain(r);
    }
    for (at, row) in inserts.into_iter().rev() {
        out.rejects.splice(at..at, row);
    }
}

/// The partner IDs billing lines name in several letter cases (see
/// [`Fold::partner_spelling_clashes`]), one sentence each naming every
/// spelling's first file and line: one partner that would get two
/// statements (one file on a case-insensitive file system).
pub fn partner_spelling_problems(inputs: &Inputs, fold: &Fold) -> Vec<String> {
    fold.partner_spelling_clashes()
        .iter()
        .map(|spellings| {
            let each: Vec<String> = spellings
                .iter()
                .map(|&(id, at, reversed)| {
                    let id = crate::console::spelled(id);
                    let (file, line) = ((at >> 40) as usize, at & ((1 << 40) - 1));
                    let name = inputs.files.get(file).map_or("?", |f| f.display.as_str());
                    if reversed {
                        format!(
                            "{id} ({name}:{line}, a credit reversing what a closed period \
                             issued to {id})"
                        )
                    } else {
                        format!("{id} ({name}:{line})")
                    }
                })
                .collect();
            let history = spellings.iter().any(|s| s.2);
            format!(
                "billing lines name one partner ID in {} letter cases: {}; IDs are \
                 case-insensitive, so this is one partner, whose statements cannot be written \
                 under two spellings: spell it one way in the billing files{}",
                spellings.len(),
                each.join(", "),
                if history {
                    " (as the history issued it, or as the designations spell it)"
                } else {
                    ""
                }
            )
        })
        .collect()
}

/// Receives chunk outputs in input order.
pub trait Sink {
    fn chunk(&mut self, out: &ChunkOutput) -> Result<(), Fatal>;
}

/// What the streaming stage returns.
pub struct Streamed {
    /// Billing and usage accruals; the billing files' counts.
    pub fold: Fold,
    /// The usage files' counts (with a period: after accruing their records,
    /// whose rows went to the sink after the billing rows).
    pub usage: UsageRun,
    pub digests: Vec<FileDigest>,
    pub rejects: u64,
    pub reject_samples: Vec<Reject>,
    /// The statement groups spilled to disk (none without
    /// [`StreamSettings::spill`]); the groups not spilled are in `fold`.
    /// Merged by [`crate::spill::partner_groups`].
    pub runs: Runs,
}

const SAMPLES: usize = 20;

/// An output buffer emptied for the next chunk. A buffer keeps the memory of
/// the largest output it ever held, so one far larger than its last output
/// (a ledger buffer now carrying a file of not-eligible rows, say) is first
/// shrunk to that: otherwise each of the `2 x threads + 2` buffer sets would
/// keep the largest ledger *and* the largest not-eligible output of the run.
fn reuse(mut v: Vec<u8>) -> Vec<u8> {
    let used = v.len();
    v.clear();
    if v.capacity() > 2 * used + (1 << 20) {
        v.shrink_to(used);
    }
    v
}

/// Output buffers handed back by the collector for reuse.
#[derive(Default)]
pub struct OutBufs {
    pub ledger: Vec<u8>,
    pub not_eligible: Vec<u8>,
    pub rejects: Vec<u8>,
    pub keys: Vec<u8>,
}

/// Processes one chunk into a fold of its own: pure, deterministic, no I/O.
pub fn process_chunk(
    inputs: &Inputs,
    settings: &StreamSettings,
    seq: u64,
    chunk: &Chunk,
    bufs: OutBufs,
) -> ChunkOutput {
    let mut fold = Fold::new(inputs.files.len());
    let details = SharedDetails::default();
    let mut out = process_chunk_into(inputs, settings, seq, chunk, &mut fold, &details, bufs);
    settle_credits(inputs, &mut out, &mut CreditsInRun::default(), &details);
    fold.files = std::mem::take(&mut out.fold.files);
    fold.details = details.into_map();
    out.fold = fold;
    out
}

/// Processes one chunk, adding its accruals to `details` (the run's groups,
/// shared by all workers) and its customer names to `fold` (a worker's
/// running fold: chunks must come in increasing input order). The returned
/// output's fold holds only the chunk's row counts. Pure, no I/O.
pub fn process_chunk_into(
    inputs: &Inputs,
    settings: &StreamSettings,
    seq: u64,
    chunk: &Chunk,
    fold: &mut Fold,
    details: &SharedDetails,
    bufs: OutBufs,
) -> ChunkOutput {
    let layout = &inputs.opened[chunk.file].layout;
    let n_fields = layout.header.len();
    let mut rows = ChunkRows::new(
        &inputs.files[chunk.file],
        bufs,
        inputs.source_keys,
        settings.outputs,
    );
    let ctx = crate::accrue::Context {
        rules: &inputs.rules,
        index: &inputs.index,
        designations_file: &inputs.designations_display,
        attainment: Some(&inputs.attainment),
    };
    let mut rec = simd_csv::ByteRecord::new();
    let mut keys = (String::new(), String::new());
    let mut acc_store: Vec<Accrual<'static>> = Vec::new();
    let mut scratch_store: Scratch<'static> =
        Scratch::with_notes(std::mem::take(&mut fold.tier_notes));
    // Records are split by simd-csv (SIMD searches for the delimiter, quote and
    // newline: 2-3x the csv crate's speed on Partner Center exports), in place;
    // a record that spans lines implausibly is read line by line (see
    // `ingest::records`), so every physical line is one row or part of one.
    let format = ingest::records::RecordFormat {
        delimiter: layout.delimiter,
        header: &layout.header,
        max_record: ingest::records::MAX_RECORD_BYTES,
    };
    let mut handle = |row: ingest::records::Row<'_>| {
        let line_no = row.line;
        rows.counts.rows += 1;
        // Parse.
        let rec = match row.record {
            Ok(rec) => rec,
            Err(p) => return rows.reject(line_no, &p.column, &p.value, &p.reason),
        };
        if rec.len() != n_fields {
            let p = ingest::records::LineProblem::field_count_of(rec, n_fields);
            return rows.reject(line_no, &p.column, &p.value, &p.reason);
        }
        let line = match layout.parse(rec) {
            Ok(l) => l,
            Err(e) => return rows.reject(line_no, &e.column, &e.value, &e.reason),
        };
        let (ckey, skey) = (&mut keys.0, &mut keys.1);
        ingest::id_key_into(line.customer_id, ckey);
        ingest::id_key_into(line.subscription_id, skey);
        if settings.period.is_some_and(|p| line.charge_start >= p.end) {
            rows.counts.dated_after_period += 1;
        }
        // A credit of a charge of a closed period reverses what that charge
        // accrued, instead of accruing under today's designations.
        if let Some(closed) = inputs.closed.as_deref() {
            if line.subtotal.is_sign_negative() && !line.tax {
                let row = LineRow {
                    line: &line,
                    line_no,
                    ckey,
                    skey,
                };
                match credit_of_closed(closed, &row) {
                    Ok(None) => rows.counts.credits_unmatched += 1,
                    Ok(Some(charge)) => {
                        match reversal_accruals(inputs, &row, &charge) {
                            Ok(rev) => {
                                rows.counts.credits_matched += 1;
                                rows.counts.accrued += 1;
                                let (slot, _) = inputs.index.customer_slot(ckey);
                                let at = crate::fold::input_order(chunk.file, line_no);
                                fold.note_customer_slot(slot, ckey, line.customer_name, at);
                                for r in &rev {
                                    fold.note_reversal_partner(r.accrual.partner_id, at);
                                }
                                rows.reversed(&row, &rev, &charge, chunk.file);
                            }
                            Err(why) => {
                                rows.counts.credits_refused += 1;
                                let value = line.subtotal.to_string();
                                rows.reject(line_no, "Subtotal", &value, &why)
                            }
                        }
                        return;
                    }
                    Err(why) => {
                        rows.counts.credits_refused += 1;
                        let value = line.reference_id.to_string();
                        return rows.reject(line_no, "ReferenceId", &value, &why);
                    }
                }
            }
        }
        // Accrue.
        let mut accruals: Vec<Accrual<'_>> = recycle(std::mem::take(&mut acc_store));
        let mut scratch: Scratch<'_> = std::mem::take(&mut scratch_store).recycle();
        let (slot, designations) = inputs.index.customer_slot(ckey);
        let outcome = crate::accrue::accrue_line_with(
            &ctx,
            designations,
            &line,
            ckey,
            &mut scratch,
            &mut accruals,
        );
        // Write rows.
        let at = crate::fold::input_order(chunk.file, line_no);
        let row = LineRow {
            line: &line,
            line_no,
            ckey,
            skey,
        };
        match outcome {
            Outcome::Accrued => {
                rows.counts.accrued += 1;
                rows.counts
                    .note_matched_on(crate::accrue::matched_columns(&line, &accruals));
                fold.note_customer_slot(slot, ckey, line.customer_name, at);
                for a in accruals.iter().filter(|a| a.designation.is_none()) {
                    fold.note_line_partner(a.partner_id, at);
                }
                rows.accrued(inputs, &row, &accruals, details);
            }
            Outcome::NotEligible { reason, detail } => {
                rows.counts.note_not_eligible(reason);
                fold.note_customer_slot(slot, ckey, line.customer_name, at);
                rows.not_eligible(&row, reason, &detail);
            }
            Outcome::Rejected {
                column,
                value,
                reason,
            } => rows.reject(line_no, &column, &value, &reason),
        }
        acc_store = recycle(accruals);
        scratch_store = scratch.recycle();
    };
    ingest::records::for_each_row(
        &chunk.data,
        chunk.first_line,
        chunk.kind,
        format,
        &mut rec,
        &mut handle,
    );
    fold.tier_notes = std::mem::take(&mut scratch_store.tier_notes);
    rows.output(inputs, seq, chunk)
}

/// One parsed billing line and its keys (lower case), for its output rows.
struct LineRow<'l, 'a> {
    line: &'l crate::ingest::BillingLine<'a>,
    line_no: u64,
    ckey: &'l str,
    skey: &'l str,
}

/// A chunk's counts and output rows, written as its lines are read.
struct ChunkRows<'i> {
    file: &'i InputFile,
    counts: FileCounts,
    ledger: RowBuf,
    not_eligible: RowBuf,
    rejects: RowBuf,
    /// Source keys of accrued lines, when the run records them.
    keys: Option<RowBuf>,
    /// Whether groups are kept and ledger and not-eligible rows written
    /// ([`StreamSettings::outputs`]).
    outputs: bool,
    /// The first few rejects of the chunk, for the console.
    reject_samples: Vec<Reject>,
    n_rejects: u64,
    /// Credits of closed charges, for [`settle_credits`].
    claims: Vec<CreditClaim>,
}

impl<'i> ChunkRows<'i> {
    fn new(file: &'i InputFile, bufs: OutBufs, keys: bool, outputs: bool) -> ChunkRows<'i> {
        ChunkRows {
            file,
            outputs,
            counts: FileCounts::default(),
            ledger: RowBuf::with_buffer(bufs.ledger),
            not_eligible: RowBuf::with_buffer(bufs.not_eligible),
            rejects: RowBuf::with_buffer(bufs.rejects),
            keys: keys.then(|| RowBuf::with_buffer(bufs.keys)),
            reject_samples: Vec::new(),
            n_rejects: 0,
            claims: Vec::new(),
        }
    }

    /// Counts a rejected row and writes its reject row.
    fn reject(&mut self, line: u64, column: &str, value: &str, reason: &str) {
        self.counts.rejected += 1;
        self.n_rejects += 1;
        if self.reject_samples.len() < SAMPLES {
            self.reject_samples.push(Reject {
                file: self.file.display.clone(),
                line,
                column: column.to_string(),
                value: value.to_string(),
                reason: reason.to_string(),
            });
        }
        write_reject_row(
            &mut self.rejects,
            &RejectRow {
                source_file: &self.file.display,
                source_line: line,
                column,
                value,
                reason,
            },
        );
    }

    /// Adds an accrued line's accruals to the shared groups and writes their
    /// ledger rows.
    fn accrued(
        &mut self,
        inputs: &Inputs,
        r: &LineRow<'_, '_>,
        accruals: &[Accrual<'_>],
        details: &SharedDetails,
    ) {
        let line = r.line;
        if let Some(k) = self.keys.as_mut() {
            write_source_keys_row(k, &self.file.display, r);
        }
        if !self.outputs {
            return;
        }
        for a in accruals {
            details.add(a, r.ckey, r.skey, line.currency);
            write_ledger_row(
                &mut self.ledger,
                &LedgerRow {
                    partner_id: a.partner_id,
                    customer_id: r.ckey,
                    program_id: &inputs.rules.programs[a.program].id,
                    association: a.association.as_str(),
                    subscription_id: r.skey,
                    charge_date: line.charge_start,
                    accrual_month: a.month,
                    source_file: &self.file.display,
                    source_line: r.line_no,
                    basis_amount: a.basis,
                    basis_min_dp: line.currency.minor_units(),
                    rate: a.rate,
                    share: a.share,
                    accrual_amount: a.amount,
                    currency: line.currency,
                    designation_line: a.designation.map(|d| d.line),
                    credited_days: a.days.map(|(c, _)| c as u64),
                    charge_days: a.days.map(|(_, t)| t as u64),
                    reverses: None,
                    invoice_number: line.invoice_number,
                    product_id: line.product_id,
                },
            );
        }
    }

    /// Adds a credit line's reversals to the shared groups (under the
    /// recorded partner, customer, program, subscription, association, rate
    /// and share) and writes their ledger rows, each naming what it reverses.
    fn reversed(
        &mut self,
        r: &LineRow<'_, '_>,
        rev: &[ReversalRow<'_>],
        charge: &crate::history::reverse::Charge,
        file: usize,
    ) {
        let Some(first) = rev.first() else {
            return;
        };
        let (ledger_at, keys_at) = (
            self.ledger.buf.len(),
            self.keys.as_ref().map_or(0, |k| k.buf.len()),
        );
        let mut claim = CreditClaim {
            charge: first.reverses.clone(),
            line_amount: first.line_amount,
            credited: charge.credited,
            credit: r.line.subtotal,
            file,
            line: r.line_no,
            ledger: ledger_at..ledger_at,
            keys: keys_at..keys_at,
            rejects_at: self.rejects.buf.len(),
            adds: Vec::new(),
            redo: Vec::new(),
            charge_date: r.line.charge_start,
            invoice_number: String::new(),
            product_id: String::new(),
            currency: r.line.currency,
        };
        if let Some(k) = self.keys.as_mut() {
            write_source_keys_row(k, &self.file.display, r);
            claim.keys.end = k.buf.len();
        }
        if self.outputs {
            claim.invoice_number = r.line.invoice_number.to_string();
            claim.product_id = r.line.product_id.to_string();
            self.reversal_rows(rev, &mut claim);
            claim.ledger.end = self.ledger.buf.len();
        }
        self.claims.push(claim);
    }

    /// The ledger rows of a credit line's reversals, kept in `claim.redo`
    /// for the collector, and their groups and sums into `claim.adds`.
    fn reversal_rows(&mut self, rev: &[ReversalRow<'_>], claim: &mut CreditClaim) {
        for x in rev {
            let a = &x.accrual;
            claim.adds.push(SharedDetails::keyed(
                a,
                x.customer_id,
                x.subscription_id,
                claim.currency,
            ));
            let row = RedoRow {
                partner_id: a.partner_id.to_string(),
                customer_id: x.customer_id.to_string(),
                program_id: x.program_id.to_string(),
                association: a.association,
                subscription_id: x.subscription_id.to_string(),
                month: a.month,
                recorded: x.recorded,
                rate: a.rate,
                share: a.share,
                reverses: x.reverses.clone(),
            };
            write_reversal_row(
                &mut self.ledger,
                &self.file.display,
                claim,
                &row,
                a.basis,
                a.amount,
            );
            claim.redo.push(row);
        }
    }

    /// Writes a not-eligible line's row.
    fn not_eligible(&mut self, r: &LineRow<'_, '_>, reason: Reason, detail: &str) {
        if !self.outputs {
            return;
        }
        let line = r.line;
        write_not_eligible_row(
            &mut self.not_eligible,
            &NotEligibleRow {
                source_file: &self.file.display,
                source_line: r.line_no,
                customer_id: r.ckey,
                subscription_id: r.skey,
                charge_date: line.charge_start,
                basis_amount: line.subtotal,
                basis_min_dp: line.currency.minor_units(),
                currency: Some(line.currency),
                reason: reason.as_str(),
                detail,
            },
        );
    }

    /// The chunk's output: its rows, and a fold holding only its counts.
    fn output(self, inputs: &Inputs, seq: u64, chunk: &Chunk) -> ChunkOutput {
        let mut counted = Fold::new(inputs.files.len());
        counted.files[chunk.file] = self.counts;
        ChunkOutput {
            seq,
            bytes: chunk.data.len() as u64,
            fold: counted,
            ledger: self.ledger.buf,
            not_eligible: self.not_eligible.buf,
            rejects: self.rejects.buf,
            keys: self.keys.map(|k| k.buf).unwrap_or_default(),
            reject_samples: self.reject_samples,
            n_rejects: self.n_rejects,
            claims: self.claims,
        }
    }
}

/// Looks a credit line up in the closed periods: the one charge it refers
/// to, if any.
fn credit_of_closed(
    closed: &dyn crate::history::reverse::ClosedCharges,
    r: &LineRow<'_, '_>,
) -> Result<Option<crate::history::reverse::Charge>, String> {
    let line = r.line;
    let key = crate::history::reverse::ChargeKey {
        customer_id: r.ckey.to_string(),
        reference_id: line.reference_id.trim().to_string(),
        subscription_id: r.skey.to_string(),
        product_id: line.product_id.to_string(),
        sku_id: line.sku_id.map(str::to_string),
        charge_start: line.charge_start,
        charge_end: line.charge_end.unwrap_or(line.charge_start),
        scope: crate::history::reverse::Scope::Whole,
    };
    closed.charge(&key)
}

/// One reversal of a recorded accrual, as the fold and the ledger take it.
struct ReversalRow<'c> {
    accrual: Accrual<'c>,
    customer_id: &'c str,
    subscription_id: &'c str,
    program_id: &'c str,
    reverses: String,
    /// The line amount of the charge it reverses.
    line_amount: Decimal,
    /// The basis the reversed accrual recorded.
    recorded: Decimal,
}

/// The reversals of a credit line against its closed charge, or why it is
/// rejected: an over-credit, a currency other than the charge's, a program
/// no longer in the rules, a damaged history row. All or nothing: a credit
/// line is reversed entirely or rejected.
fn reversal_accruals<'c>(
    inputs: &'c Inputs,
    r: &LineRow<'_, '_>,
    charge: &'c crate::history::reverse::Charge,
) -> Result<Vec<ReversalRow<'c>>, String> {
    let rev =
        crate::history::reverse::reversals(r.line.subtotal, charge.credited, &charge.accruals)
            .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(rev.len());
    for (x, c) in rev.into_iter().zip(&charge.accruals) {
        let rec = &c.accrual;
        let at = &x.reverses;
        if rec.currency != r.line.currency.as_str() {
            return Err(format!(
                "the credit is in {}, the closed charge {at} in {}: a credit reverses its charge in the charge's currency",
                r.line.currency.as_str(),
                rec.currency
            ));
        }
        let program = inputs
            .rules
            .programs
            .iter()
            .position(|p| p.id == rec.program_id)
            .ok_or_else(|| {
                format!(
                    "the closed charge {at} accrued under program '{}', which the rules no longer have",
                    rec.program_id
                )
            })?;
        let association = crate::config::Association::parse(&rec.association).ok_or_else(|| {
            format!(
                "the closed charge {at} has the association '{}': the history is damaged",
                rec.association
            )
        })?;
        let month = crate::dates::Month::parse(&rec.accrual_month).ok_or_else(|| {
            format!(
                "the closed charge {at} has the accrual month '{}': the history is damaged",
                rec.accrual_month
            )
        })?;
        out.push(ReversalRow {
            accrual: Accrual {
                program,
                // The partner as issued, under the designations' spelling
                // of its ID (one partner, one statement).
                partner_id: inputs.index.partner_spelling(&rec.partner_id),
                association,
                basis: x.basis,
                rate: x.rate,
                share: x.share,
                amount: x.amount,
                designation: None,
                days: None,
                month,
            },
            customer_id: &rec.customer_id,
            subscription_id: &rec.subscription_id,
            program_id: &inputs.rules.programs[program].id,
            reverses: x.reverses,
            line_amount: x.line,
            recorded: x.recorded,
        });
    }
    Ok(out)
}

/// The columns of `source-keys.csv`: one row per accrued billing line, what
/// `close` records with its accruals so that a later credit can find them.
pub const SOURCE_KEYS_HEADER: [&str; 9] = [
    "source_file",
    "source_line",
    "reference_id",
    "subscription_id",
    "product_id",
    "sku_id",
    "charge_start",
    "charge_end",
    "line_amount",
];

/// One row of `source-keys.csv` (see [`SOURCE_KEYS_HEADER`]); the
/// subscription as its key, like the ledger; `line_amount` is the line's
/// whole `Subtotal`, exact.
fn write_source_keys_row(w: &mut RowBuf, source_file: &str, r: &LineRow<'_, '_>) {
    let line = r.line;
    w.text(source_file);
    w.num(r.line_no);
    w.text(line.reference_id.trim());
    w.text(r.skey);
    w.text(line.product_id);
    w.text(line.sku_id.unwrap_or(""));
    w.date(line.charge_start);
    match line.charge_end {
        Some(d) => w.date(d),
        None => w.empty(),
    }
    w.decimal(line.subtotal, line.currency.minor_units());
    w.end();
}

/// What accruing the usage records produced.
#[derive(Default)]
pub struct UsageRun {
    /// Ledger and not-eligible rows, for the run's sink (rejects were written before).
    pub output: ChunkOutput,
    pub files: Vec<CountsReport>,
    pub total: CountsReport,
}

/// Accrues every usage observation of the period. Records are processed in input
/// order; the output does not depend on threads (there are none here).
pub fn accrue_usage(inputs: &Inputs, period: Period) -> UsageRun {
    let usage = &inputs.usage;
    let mut files = read_file_counts(inputs);
    let mut fold = Fold::new(0);
    let mut ledger = RowBuf::default();
    let mut not_eligible = RowBuf::default();
    let mut rejects = RowBuf::default();
    let mut i = 0;
    let obs = &usage.obs;
    let ctx = Context {
        rules: &inputs.rules,
        index: &inputs.index,
        designations_file: &inputs.designations_display,
        attainment: Some(&inputs.attainment),
    };
    let mut acc: Vec<Accrual<'_>> = Vec::new();
    let (mut n_rejects, mut reject_samples) = (0u64, Vec::new());
    while i < obs.len() {
        // One record = the observations of one (file, line).
        let mut j = i;
        while j < obs.len() && obs[j].file == obs[i].file && obs[j].line == obs[i].line {
            j += 1;
        }
        let first = &obs[i];
        let file = &usage.files[first.file];
        let mut accrued = false;
        let mut worst: Option<(Reason, Vec<String>)> = None;
        let mut failed: Option<(String, String, String)> = None;
        let mut details = Vec::new();
        // A record's accruals are kept until all its workloads are through:
        // a record rejected for one workload leaves no ledger row for another.
        let mut paid: Vec<(usize, Vec<Accrual<'_>>)> = Vec::new();
        for (k, o) in obs.iter().enumerate().take(j).skip(i) {
            acc.clear();
            match accrue_observation(&ctx, usage, k, o, period, &mut acc) {
                Outcome::Accrued => {
                    accrued = true;
                    paid.push((k, acc.clone()));
                }
                Outcome::NotEligible {
                    reason: r,
                    detail: d,
                } => {
                    details.push(d);
                    if worst.as_ref().is_none_or(|w| r > w.0) {
                        worst = Some((r, vec![o.workload_name.clone()]));
                    } else if let Some(w) = worst.as_mut().filter(|w| w.0 == r) {
                        w.1.push(o.workload_name.clone());
                    }
                }
                // Attribution of usage never rejects (share conflicts are a
                // reason): an accrual too large for a decimal does.
                Outcome::Rejected {
                    column,
                    value,
                    reason,
                } => failed = failed.or(Some((column, value, reason))),
            }
        }
        let counts = &mut files[first.file];
        if let Some((column, value, reason)) = failed {
            // The whole record, even when another workload of it accrued.
            counts.rejected += 1;
            n_rejects += 1;
            if reject_samples.len() < SAMPLES {
                reject_samples.push(Reject {
                    file: file.input.display.clone(),
                    line: first.line,
                    column: column.clone(),
                    value: value.clone(),
                    reason: reason.clone(),
                });
            }
            write_reject_row(
                &mut rejects,
                &RejectRow {
                    source_file: &file.input.display,
                    source_line: first.line,
                    column: &column,
                    value: &value,
                    reason: &reason,
                },
            );
        } else if accrued {
            counts.accrued += 1;
            for (k, a) in &paid {
                usage_rows(
                    inputs,
                    &obs[*k],
                    &file.input.display,
                    a,
                    &mut fold,
                    &mut ledger,
                );
            }
        } else if let Some((r, workloads)) = worst {
            counts.note_not_eligible(r);
            let mau: Decimal = obs[i..j].iter().map(|o| o.mau).sum();
            write_not_eligible_row(
                &mut not_eligible,
                &NotEligibleRow {
                    source_file: &file.input.display,
                    source_line: first.line,
                    customer_id: &first.customer_id,
                    subscription_id: &workloads.join(";"),
                    charge_date: first.date,
                    basis_amount: mau,
                    basis_min_dp: 0,
                    currency: None,
                    reason: r.as_str(),
                    detail: &details.join("; "),
                },
            );
        }
        i = j;
    }
    let mut total = FileCounts::default();
    for f in &files {
        total.add(f);
    }
    UsageRun {
        output: ChunkOutput {
            seq: 0,
            bytes: 0,
            fold,
            ledger: ledger.buf,
            not_eligible: not_eligible.buf,
            rejects: rejects.buf,
            keys: Vec::new(),
            reject_samples,
            n_rejects,
            claims: Vec::new(),
        },
        files: reports(inputs, &files),
        total: total.report("(all usage files)".into(), String::new(), &Reason::USAGE),
    }
}

/// Adds an accrued usage observation's accruals to `fold` and writes their
/// ledger rows (the workload stands where billing has the subscription).
fn usage_rows(
    inputs: &Inputs,
    o: &UsageObs,
    source_file: &str,
    acc: &[Accrual<'_>],
    fold: &mut Fold,
    ledger: &mut RowBuf,
) {
    let cur = o.workload_name.as_str();
    let currency = |pi: usize| {
        inputs.rules.programs[pi]
            .usage_currency()
            .unwrap_or_else(|| crate::money::Currency::parse("USD").expect("USD"))
    };
    if let Some(n) = inputs.usage.customer_names.get(&o.customer_id) {
        fold.note_customer(&o.customer_id, n, u64::MAX);
    }
    for a in acc {
        let c = currency(a.program);
        fold.add(a, &o.customer_id, cur, c);
        write_ledger_row(
            ledger,
            &LedgerRow {
                partner_id: a.partner_id,
                customer_id: &o.customer_id,
                program_id: &inputs.rules.programs[a.program].id,
                association: a.association.as_str(),
                subscription_id: cur,
                charge_date: o.date,
                accrual_month: a.month,
                source_file,
                source_line: o.line,
                basis_amount: a.basis,
                basis_min_dp: 0,
                rate: a.rate,
                share: a.share,
                accrual_amount: a.amount,
                currency: c,
                designation_line: a.designation.map(|d| d.line),
                // No proration for usage.
                credited_days: None,
                charge_days: None,
                reverses: None,
                invoice_number: "",
                product_id: "",
            },
        );
    }
}

/// Each usage file's counts before accruing: rows read and rejected.
fn read_file_counts(inputs: &Inputs) -> Vec<FileCounts> {
    inputs
        .usage
        .files
        .iter()
        .map(|f| FileCounts {
            rows: f.rows,
            rejected: f.rejected,
            ..FileCounts::default()
        })
        .collect()
}

/// Each usage file's counts as reported (usage reasons by name).
fn reports(inputs: &Inputs, counts: &[FileCounts]) -> Vec<CountsReport> {
    inputs
        .usage
        .files
        .iter()
        .zip(counts)
        .map(|(f, c)| {
            c.report(
                f.input.display.clone(),
                f.format.as_str().into(),
                &Reason::USAGE,
            )
        })
        .collect()
}

/// Counts of usage files without a period (`validate`): read, usable, rejected.
pub fn usage_read_counts(inputs: &Inputs) -> Vec<CountsReport> {
    reports(inputs, &read_file_counts(inputs))
}

/// Progress reporting hooks (the CLI draws a bar; tests pass `()`).
pub trait Progress: Sync {
    fn advance(&self, _bytes: u64, _rows: u64) {}
    /// A phase of the stream ended (the console may report memory).
    fn phase(&self, _name: &str) {}
}
impl Progress for () {}

/// A chunk and its position in the input.
type Job = (u64, Chunk);

/// A worker's result for one chunk: its output, or why the worker failed on it.
type ChunkResult = Result<ChunkOutput, Fatal>;

/// The channels and flags the reader, the workers and the collector share.
struct Lanes {
    chunk_rx: crossbeam_channel::Receiver<Job>,
    permit_tx: crossbeam_channel::Sender<()>,
    permit_rx: crossbeam_channel::Receiver<()>,
    /// Recycled chunk data (workers -> reader).
    spare_in_tx: crossbeam_channel::Sender<Vec<u8>>,
    spare_in_rx: crossbeam_channel::Receiver<Vec<u8>>,
    /// Recycled output buffers (collector -> workers).
    spare_out_tx: crossbeam_channel::Sender<OutBufs>,
    spare_out_rx: crossbeam_channel::Receiver<OutBufs>,
    /// Set once the run failed: the reader stops, workers skip their chunks.
    cancel: AtomicBool,
}

impl Lanes {
    /// The lanes, and the ends each held by one stage only (see [`Ends`]).
    fn new(threads: usize) -> (Lanes, Ends) {
        let in_flight = 2 * threads + 2;
        let (chunk_tx, chunk_rx) = bounded(in_flight);
        let (res_tx, res_rx) = bounded(in_flight);
        let (permit_tx, permit_rx) = bounded(in_flight);
        let (spare_in_tx, spare_in_rx) = bounded(in_flight + threads);
        let (spare_out_tx, spare_out_rx) = bounded(in_flight + threads);
        for _ in 0..in_flight {
            let _ = permit_tx.send(());
        }
        let lanes = Lanes {
            chunk_rx,
            permit_tx,
            permit_rx,
            spare_in_tx,
            spare_in_rx,
            spare_out_tx,
            spare_out_rx,
            cancel: AtomicBool::new(false),
        };
        let ends = Ends {
            chunk_tx,
            res_tx,
            res_rx,
        };
        (lanes, ends)
    }

    /// Stops the run: the reader stops at its next chunk (a permit is freed
    /// in case it waits for one) and workers skip what they still receive.
    fn stop(&self) {
        self.cancel.store(true, Ordering::Relaxed);
        while self.permit_tx.try_send(()).is_ok() {}
    }

    fn stopped(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

/// The channel ends a stage closes by ending: the reader's chunk sender (the
/// workers stop when it is dropped), the workers' result senders (the
/// collector's loop ends when all are dropped) and the collector's receiver.
struct Ends {
    chunk_tx: crossbeam_channel::Sender<Job>,
    res_tx: crossbeam_channel::Sender<ChunkResult>,
    res_rx: crossbeam_channel::Receiver<ChunkResult>,
}

/// The test hook `PORLEDGER_FAULT_AT` (see [`crate::render::publish`]):
/// `worker-panic` makes a worker panic on its first chunk, to test that a
/// failed worker ends the run (exit 2, nothing published) instead of hanging it.
fn worker_panic_fault() -> bool {
    std::env::var_os("PORLEDGER_FAULT_AT").is_some_and(|v| {
        v.to_string_lossy()
            .split(',')
            .any(|i| i.trim() == "worker-panic")
    })
}

/// The reader: cuts every billing file into chunks, each sent when a permit
/// (a free place in flight) is available. Returns the files' digests.
fn read_stage(
    inputs: &Inputs,
    settings: &StreamSettings,
    lanes: &Lanes,
    chunk_tx: crossbeam_channel::Sender<Job>,
) -> Result<Vec<FileDigest>, Fatal> {
    let mut seq = 0u64;
    let mut digests = Vec::with_capacity(inputs.files.len());
    for (i, f) in inputs.files.iter().enumerate() {
        let spare = || {
            lanes
                .spare_in_rx
                .try_recv()
                .unwrap_or_else(|_| ingest::chunk_buffer(settings.chunk_size))
        };
        let d = ingest::read_chunks(
            i,
            f,
            &inputs.opened[i].header,
            settings.chunk_size,
            settings.hashing(),
            spare,
            |c| {
                if lanes.stopped() || lanes.permit_rx.recv().is_err() || lanes.stopped() {
                    return false;
                }
                let ok = chunk_tx.send((seq, c)).is_ok();
                seq += 1;
                ok
            },
        )?;
        digests.push(d);
        if lanes.stopped() {
            break;
        }
    }
    Ok(digests)
}

/// A worker: processes chunks until there are no more, adding the accruals
/// of all its chunks to the shared groups (one key allocation per group, not
/// per group and chunk) and keeping the customer names it saw in a fold of its
/// own, merged with the others' at the end.
///
/// A panic while processing a chunk is caught and sent to the collector as
/// that chunk's result, so the collector never waits for a sequence number
/// that will not come; the run then stops.
fn work_stage(
    inputs: &Inputs,
    settings: &StreamSettings,
    lanes: &Lanes,
    details: &SharedDetails,
    res_tx: crossbeam_channel::Sender<ChunkResult>,
    fault: bool,
) -> Fold {
    let mut fold = Fold::new(inputs.files.len());
    while let Ok((seq, chunk)) = lanes.chunk_rx.recv() {
        if lanes.stopped() {
            continue; // drain, so that the reader never blocks on a full channel
        }
        let bufs = lanes.spare_out_rx.try_recv().unwrap_or_default();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if fault {
                panic!("PORLEDGER_FAULT_AT=worker-panic");
            }
            process_chunk_into(inputs, settings, seq, &chunk, &mut fold, details, bufs)
        }));
        let mut data = chunk.data;
        data.clear();
        let _ = lanes.spare_in_tx.try_send(data);
        let failed = result.is_err();
        let result = result.map_err(|p| worker_failure(inputs, seq, chunk.file, p.as_ref()));
        if failed {
            // Keeps draining (skipping) chunks, so the reader can finish.
            lanes.stop();
        }
        if res_tx.send(result).is_err() {
            lanes.stop();
        }
    }
    fold
}

/// The error of a worker that panicked on chunk `seq` of file `file`.
fn worker_failure(
    inputs: &Inputs,
    seq: u64,
    file: usize,
    payload: &(dyn std::any::Any + Send),
) -> Fatal {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    Fatal::Worker(format!(
        "a worker failed on billing chunk {seq} of {}: {what}",
        inputs.files[file].display
    ))
}

/// What the collector gathered, in input order.
struct Collected {
    fold: Fold,
    rejects: u64,
    samples: Vec<Reject>,
    failure: Option<Fatal>,
    runs: Runs,
    /// With threads: the spill thread, which sorts and writes what it is
    /// sent into `runs` of its own (`None`: spills are written by the
    /// collector, into `runs`).
    spiller: Option<crossbeam_channel::Sender<Vec<(DetailKey, Sums)>>>,
    /// What the run's credits of closed charges took so far.
    credits: CreditsInRun,
}

impl Collected {
    fn new(inputs: &Inputs, settings: &StreamSettings, prior_rejects: u64) -> Collected {
        Collected {
            fold: Fold::new(inputs.files.len()),
            rejects: prior_rejects,
            samples: Vec::new(),
            failure: None,
            runs: settings
                .spill
                .as_ref()
                .map(|s| Runs::new(s.dir.clone()))
                .unwrap_or_default(),
            spiller: None,
            credits: CreditsInRun::default(),
        }
    }
}

/// The spill thread of a threaded stream: sorts each batch of groups it is
/// sent and writes it as a run, while the collector goes on handing chunks
/// to the sink (sorting millions of groups on the collector stalled the
/// workers once the chunks in flight were used up). One batch waits at
/// most, so memory holds at most the budget twice over.
fn spill_stage(
    mut runs: Runs,
    rx: crossbeam_channel::Receiver<Vec<(DetailKey, Sums)>>,
) -> Result<Runs, Fatal> {
    for mut groups in rx {
        // Keys are unique, so an unstable sort gives one order.
        groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        runs.write(groups)?;
    }
    Ok(runs)
}

/// The collector: takes the chunk outputs in sequence order, counts them and
/// hands them to the sink; stops the run on the first failure (a worker's,
/// the sink's, or too many rejects), then drains until every worker is done.
#[allow(clippy::too_many_arguments)]
fn collect_stage(
    inputs: &Inputs,
    settings: &StreamSettings,
    lanes: &Lanes,
    details: &SharedDetails,
    res_rx: crossbeam_channel::Receiver<ChunkResult>,
    sink: &mut dyn Sink,
    progress: &dyn Progress,
    prior_rejects: u64,
    spiller: Option<crossbeam_channel::Sender<Vec<(DetailKey, Sums)>>>,
) -> Collected {
    let mut c = Collected::new(inputs, settings, prior_rejects);
    c.spiller = spiller;
    let mut pending: BTreeMap<u64, ChunkOutput> = BTreeMap::new();
    let mut next = 0u64;
    for out in res_rx.iter() {
        if c.failure.is_some() {
            continue; // drain so that workers finish
        }
        match out {
            Ok(out) => {
                pending.insert(out.seq, out);
            }
            Err(e) => c.failure = Some(e),
        }
        while c.failure.is_none() {
            let Some(out) = pending.remove(&next) else {
                break;
            };
            next += 1;
            let _ = lanes.permit_tx.try_send(());
            let bufs = collect_one(inputs, settings, &mut c, details, out, sink, progress);
            let _ = lanes.spare_out_tx.try_send(bufs);
        }
        if c.failure.is_some() {
            lanes.stop();
        }
    }
    c
}

/// Counts one chunk output (in sequence order), hands it to the sink, merges
/// its fold, spills the shared groups when they pass the budget and recycles
/// the chunk's buffers.
fn collect_one(
    inputs: &Inputs,
    settings: &StreamSettings,
    c: &mut Collected,
    details: &SharedDetails,
    mut out: ChunkOutput,
    sink: &mut dyn Sink,
    progress: &dyn Progress,
) -> OutBufs {
    settle_credits(inputs, &mut out, &mut c.credits, details);
    c.rejects += out.n_rejects;
    for r in &out.reject_samples {
        if c.samples.len() < SAMPLES {
            c.samples.push(r.clone());
        }
    }
    if let Some(max) = settings.max_rejects {
        if c.rejects > max {
            c.failure = Some(Fatal::TooManyRejects {
                count: c.rejects,
                max,
                samples: c.samples.clone(),
            });
        }
    }
    if c.failure.is_none() {
        if let Err(e) = sink.chunk(&out) {
            c.failure = Some(e);
        }
    }
    let rows: u64 = out.fold.files.iter().map(|f| f.rows).sum();
    progress.advance(out.bytes, rows);
    let mut chunk_fold = out.fold;
    c.fold.merge_from(&mut chunk_fold);
    if let Some(spill) = &settings.spill {
        if c.failure.is_none() && details.len() > spill.after_groups {
            let written = match &c.spiller {
                // A closed channel: the spill thread stopped on an error,
                // which its join reports.
                Some(tx) => {
                    let _ = tx.send(details.drain());
                    Ok(())
                }
                None => spill_groups(details, &mut c.runs),
            };
            if let Err(e) = written {
                c.failure = Some(e);
            }
        }
    }
    OutBufs {
        ledger: reuse(out.ledger),
        not_eligible: reuse(out.not_eligible),
        rejects: reuse(out.rejects),
        keys: reuse(out.keys),
    }
}

/// Writes every shared group as one run, sorted on this thread: the
/// collector's time, while the workers go on adding to the emptied shards
/// (up to the chunks in flight), and no more threads than the run asked for.
fn spill_groups(details: &SharedDetails, runs: &mut Runs) -> Result<(), Fatal> {
    let mut groups = details.drain();
    // Keys are unique, so an unstable sort gives one order.
    groups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    runs.write(groups)
}

/// `--threads 1`: reads, processes and writes each chunk in turn on this
/// thread, with no reader, worker or collector thread and no channels. The
/// same chunks, in the same order, through the same [`process_chunk_into`]
/// and [`collect_one`] as the threaded path, so the outputs are the same
/// bytes; one thread of CPU is what `--threads 1` asks for (the threaded
/// path would add a reader and a collector thread competing for the cores).
fn stream_inline(
    inputs: &Inputs,
    settings: &StreamSettings,
    details: &SharedDetails,
    sink: &mut dyn Sink,
    progress: &dyn Progress,
    prior_rejects: u64,
    fault: bool,
) -> (Collected, Result<Vec<FileDigest>, Fatal>) {
    let mut c = Collected::new(inputs, settings, prior_rejects);
    let mut fold = Fold::new(inputs.files.len());
    // The chunk buffer just processed, handed back to the reader.
    let spare_in: std::cell::Cell<Option<Vec<u8>>> = std::cell::Cell::new(None);
    let mut bufs = OutBufs::default();
    let mut seq = 0u64;
    let mut digests = Vec::with_capacity(inputs.files.len());
    for (i, f) in inputs.files.iter().enumerate() {
        let spare = || {
            spare_in
                .take()
                .unwrap_or_else(|| ingest::chunk_buffer(settings.chunk_size))
        };
        let emit = |chunk: Chunk| {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if fault {
                    panic!("PORLEDGER_FAULT_AT=worker-panic");
                }
                let bufs = std::mem::take(&mut bufs);
                process_chunk_into(inputs, settings, seq, &chunk, &mut fold, details, bufs)
            }));
            match result {
                Ok(out) => {
                    bufs = collect_one(inputs, settings, &mut c, details, out, sink, progress)
                }
                Err(p) => c.failure = Some(worker_failure(inputs, seq, chunk.file, p.as_ref())),
            }
            seq += 1;
            let mut data = chunk.data;
            data.clear();
            spare_in.set(Some(data));
            c.failure.is_none()
        };
        match ingest::read_chunks(
            i,
            f,
            &inputs.opened[i].header,
            settings.chunk_size,
            settings.hashing(),
            spare,
            emit,
        ) {
            Ok(d) => digests.push(d),
            Err(e) => return (c, Err(e)),
        }
        if c.failure.is_some() {
            break;
        }
    }
    progress.phase("stream read");
    c.fold.merge_from(&mut fold);
    (c, Ok(digests))
}

/// `--threads 2` and more: a reader thread (reading and hashing the files in
/// order), `threads` workers and the collector (this thread, writing).
#[allow(clippy::too_many_arguments)]
fn stream_threads(
    inputs: &Inputs,
    settings: &StreamSettings,
    threads: usize,
    details: &SharedDetails,
    fault: bool,
    sink: &mut dyn Sink,
    progress: &dyn Progress,
    prior_rejects: u64,
) -> Result<Streamed, Fatal> {
    let (lanes, ends) = Lanes::new(threads);
    let Ends {
        chunk_tx,
        res_tx,
        res_rx,
    } = ends;
    let lanes = &lanes;
    std::thread::scope(|s| {
        let reader = s.spawn(|| read_stage(inputs, settings, lanes, chunk_tx));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let tx = res_tx.clone();
                s.spawn(move || work_stage(inputs, settings, lanes, details, tx, fault))
            })
            .collect();
        drop(res_tx);
        let (spill_tx, spill_rx) = crossbeam_channel::bounded(1);
        let runs = match &settings.spill {
            Some(sp) => Runs::new(sp.dir.clone()),
            None => Runs::default(),
        };
        let spiller = s.spawn(move || spill_stage(runs, spill_rx));
        let mut c = collect_stage(
            inputs,
            settings,
            lanes,
            details,
            res_rx,
            sink,
            progress,
            prior_rejects,
            Some(spill_tx),
        );
        // Closes the channel: the spill thread finishes its last run.
        c.spiller = None;
        match spiller.join() {
            Ok(Ok(runs)) => c.runs = runs,
            Ok(Err(e)) => {
                c.failure.get_or_insert(e);
            }
            Err(_) => {
                c.failure
                    .get_or_insert(Fatal::Worker("the spill thread panicked".into()));
            }
        }
        progress.phase("stream read");
        let mut panicked = false;
        for w in workers {
            match w.join() {
                Ok(mut f) => c.fold.merge_from(&mut f),
                Err(_) => panicked = true,
            }
        }
        let digests = reader
            .join()
            .unwrap_or_else(|_| Err(Fatal::Worker("the reader thread panicked".into())));
        if let Some(f) = c.failure {
            return Err(f);
        }
        if panicked {
            return Err(Fatal::Worker("a worker thread panicked".into()));
        }
        Ok(Streamed {
            fold: c.fold,
            digests: digests?,
            rejects: c.rejects - prior_rejects,
            reject_samples: c.samples,
            usage: UsageRun::default(),
            runs: c.runs,
        })
    })
}

/// Streams every billing file through the workers and the sink.
pub fn stream(
    inputs: &Inputs,
    settings: &StreamSettings,
    sink: &mut dyn Sink,
    progress: &dyn Progress,
    prior_rejects: u64,
) -> Result<Streamed, Fatal> {
    let threads = settings.threads.max(1);
    let details = SharedDetails::default();
    let fault = worker_panic_fault();
    let mut streamed = if threads == 1 {
        let (c, digests) = stream_inline(
            inputs,
            settings,
            &details,
            sink,
            progress,
            prior_rejects,
            fault,
        );
        if let Some(f) = c.failure {
            return Err(f);
        }
        Streamed {
            fold: c.fold,
            digests: digests?,
            rejects: c.rejects - prior_rejects,
            reject_samples: c.samples,
            usage: UsageRun::default(),
            runs: c.runs,
        }
    } else {
        stream_threads(
            inputs,
            settings,
            threads,
            &details,
            fault,
            sink,
            progress,
            prior_rejects,
        )?
    };
    progress.phase(if threads == 1 {
        "lines streamed"
    } else {
        "workers joined"
    });
    streamed.fold.details = details.into_map();
    progress.phase("groups merged");
    // The usage records follow the billing lines, through the same accrue
    // stage, fold and sink.
    streamed.usage = match settings.period {
        Some(p) => {
            let mut usage = accrue_usage(inputs, p);
            sink.chunk(&usage.output)?;
            streamed.rejects += usage.output.n_rejects;
            for r in &usage.output.reject_samples {
                if streamed.reject_samples.len() < SAMPLES {
                    streamed.reject_samples.push(r.clone());
                }
            }
            if let Some(max) = settings.max_rejects {
                let total = prior_rejects + streamed.rejects;
                if total > max {
                    return Err(Fatal::TooManyRejects {
                        count: total,
                        max,
                        samples: std::mem::take(&mut streamed.reject_samples),
                    });
                }
            }
            streamed.fold.merge(std::mem::take(&mut usage.output.fold));
            usage
        }
        None => UsageRun {
            files: usage_read_counts(inputs),
            ..UsageRun::default()
        },
    };
    Ok(streamed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dates::Month;
    use chrono::NaiveDate;
    use rust_decimal::Decimal;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn billing_pau_counts_each_month_whose_last_day_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.csv");
        std::fs::write(
            &path,
            "CustomerId,SubscriptionId,ChargeStartDate,ChargeEndDate,ProductId,ProductName,SkuName,Quantity,Subtotal,Currency\n\
             T1,s,10/15/2026,11/14/2026,CFQ7,Other,M365 E3,10,100,EUR\n\
             T1,s,11/15/2026,12/14/2026,CFQ7,Other,M365 E3,10,100,EUR\n\
             T1,s,11/20/2026,12/14/2026,CFQ7,Other,M365 E3,3,-30,EUR\n\
             T1,s,1/1/2026,12/31/2026,X,Annual,,5,500,EUR\n",
        )
        .unwrap();
        let rules = crate::config::parse_rules(
            "[[program]]\nid=\"p\"\nassociations=[\"DPOR\"]\nrate=\"0.01\"\n\
             [[product]]\nmatch=\"m365 e3\"\nworkloads=[\"Teams\"]\n\
             [[product]]\nmatch=\"X\"\nworkloads=[\"Exchange\"]\n",
        )
        .unwrap();
        let file = InputFile {
            path: path.clone(),
            display: "b.csv".into(),
            size: 0,
        };
        let opened = crate::ingest::open_billing(&file).unwrap();
        let pau = billing_pau(&[file], &[opened], &rules).unwrap();
        let get = |w: &str, m: u32| {
            pau.get(&(
                "t1".to_string(),
                w.to_string(),
                Month::of(NaiveDate::from_ymd_opt(2026, m, 1).unwrap()),
            ))
            .copied()
        };
        // 10/15-11/14 covers Oct 31 only; 11/15-12/14 covers Nov 30; the credit too.
        assert_eq!(get("teams", 10), Some(d("10")));
        assert_eq!(get("teams", 11), Some(d("7")));
        assert_eq!(get("teams", 12), None);
        // The annual charge (by ProductId) counts in every month.
        assert_eq!(get("exchange", 1), Some(d("5")));
        assert_eq!(get("exchange", 12), Some(d("5")));
    }

    #[test]
    fn billing_pau_counts_billable_quantity_where_the_export_has_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.csv");
        std::fs::write(
            &path,
            "CustomerId,SubscriptionId,ChargeStartDate,ChargeEndDate,ProductName,Quantity,BillableQuantity,Subtotal,Currency\n\
             T1,s,10/1/2026,10/31/2026,M365 E3,1,25,500,EUR\n",
        )
        .unwrap();
        let rules = crate::config::parse_rules(
            "[[program]]\nid=\"p\"\nassociations=[\"DPOR\"]\nrate=\"0.01\"\n\
             [[product]]\nmatch=\"m365 e3\"\nworkloads=[\"Teams\"]\n",
        )
        .unwrap();
        let file = InputFile {
            path: path.clone(),
            display: "b.csv".into(),
            size: 0,
        };
        let opened = crate::ingest::open_billing(&file).unwrap();
        let pau = billing_pau(&[file], &[opened], &rules).unwrap();
        let oct = Month::of(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap());
        assert_eq!(
            pau.get(&("t1".to_string(), "teams".to_string(), oct))
                .copied(),
            Some(d("25"))
        );
    }

    struct Nothing;
    impl Sink for Nothing {
        fn chunk(&mut self, _out: &ChunkOutput) -> Result<(), Fatal> {
            Ok(())
        }
    }

    /// Spilling after every chunk, on one thread or several, gives the same
    /// merged groups as keeping them all in memory, and leaves no file.
    #[test]
    fn a_stream_spilling_every_chunk_merges_to_the_same_groups() {
        use crate::cmd::sample::{generate, Plan};
        let dir = tempfile::tempdir().unwrap();
        let digests = crate::render::publish::Written::new();
        generate(dir.path(), Plan::new(3_000, 5, Some(3)).unwrap(), &digests).unwrap();
        let inputs = load_inputs(
            &[dir.path().join("billing")],
            &dir.path().join("designations.csv"),
            &dir.path().join("rules.toml"),
        )
        .unwrap();
        let spill_dir = dir.path().join("spill");
        let settings = |threads, spill: Option<SpillSettings>| StreamSettings {
            threads,
            chunk_size: crate::settings::chunk_size(0).unwrap(),
            period: None,
            max_rejects: None,
            outputs: true,
            spill,
        };
        let merged = |s: Streamed| {
            crate::spill::partner_groups(s.fold.details, s.runs)
                .collect::<Result<Vec<_>, _>>()
                .unwrap()
        };
        let kept = stream(&inputs, &settings(2, None), &mut Nothing, &(), 0).unwrap();
        assert!(kept.runs.is_empty());
        let want = merged(kept);
        assert!(want.len() > 1);
        for threads in [1, 2] {
            let spill = SpillSettings {
                dir: spill_dir.clone(),
                after_groups: 1,
            };
            let s = stream(
                &inputs,
                &settings(threads, Some(spill)),
                &mut Nothing,
                &(),
                0,
            )
            .unwrap();
            assert!(s.runs.len() > 10, "{} runs", s.runs.len());
            assert!(spill_dir.is_dir());
            assert_eq!(merged(s), want, "{threads} threads");
            assert!(!spill_dir.exists());
        }
    }
}
