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
//! size. The output does not depend on the number of threads: every chunk is
//! processed the same way, rows are written in input order, and sums are
//! exact and order-free (see [`crate::fold`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::bounded;

use crate::accrue::{Accrual, Outcome, Scratch};
use crate::attribute::DesignationIndex;
use crate::dates::Period;
use crate::error::Fatal;
use crate::fold::{Fold, SharedDetails};
use crate::ingest::designations::{parse_designations, Designations, Reject};
use crate::ingest::{self, Chunk, FileDigest, InputFile, OpenedBilling};
use crate::render::csv::RowBuf;
use crate::rules::{parse_rules, Rules};

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
    /// `--usage` files, loaded by [`crate::attain::prepare`] (empty without).
    pub usage: crate::ingest::usage::UsageInput,
    /// Attainment per tenant, workload and month, from `usage`.
    pub attainment: crate::attain::AttainmentTable,
}

/// Reads rules and designations and opens every billing file's header, so that
/// a bad rules file or a billing file of unknown format fails before any work.
pub fn load_inputs(
    billing: &[PathBuf],
    designations: &std::path::Path,
    rules: &std::path::Path,
) -> Result<Inputs, Fatal> {
    let rules_text = ingest::read_text_limited(rules, ingest::limits::RULES, "rules")?;
    let parsed_rules = parse_rules(&rules_text).map_err(|e| Fatal::Config {
        file: rules.display().to_string(),
        message: e.to_string(),
    })?;
    let rules_digest = ingest::sha256_file(rules)?;
    let d_bytes = ingest::read_limited(designations, ingest::limits::DESIGNATIONS, "designations")?;
    let designations_display = designations.to_string_lossy().into_owned();
    let mut parsed = parse_designations(&designations_display, &d_bytes)?;
    let designations_digest = FileDigest {
        sha256: ingest::hex(&<sha2::Sha256 as sha2::Digest>::digest(&d_bytes)),
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
    })
}

/// Settings of the streaming stage.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    pub threads: usize,
    pub chunk_size: usize,
    pub period: Option<Period>,
    /// Stop (fatal) once more rows than this are rejected.
    pub max_rejects: Option<u64>,
}

/// The rows of one chunk, already formatted, plus its fold.
pub struct ChunkOutput {
    pub seq: u64,
    pub bytes: u64,
    pub fold: Fold,
    pub ledger: Vec<u8>,
    pub not_eligible: Vec<u8>,
    pub rejects: Vec<u8>,
    /// The first few rejects of the chunk, for the console.
    pub reject_samples: Vec<Reject>,
    pub n_rejects: u64,
}

/// Receives chunk outputs in input order.
pub trait Sink {
    fn chunk(&mut self, out: &ChunkOutput) -> Result<(), Fatal>;
}

/// What the streaming stage returns.
pub struct Streamed {
    pub fold: Fold,
    pub digests: Vec<FileDigest>,
    pub rejects: u64,
    pub reject_samples: Vec<Reject>,
}

const SAMPLES: usize = 20;

/// Reuses a vector's allocation for a vector of another lifetime.
pub(crate) fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().map(|_| unreachable!()).collect()
}

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
    let file = &inputs.files[chunk.file];
    let layout = &inputs.opened[chunk.file].layout;
    let n_fields = layout.header.len();
    let mut counts = crate::fold::FileCounts::default();
    let mut ledger = RowBuf::with_buffer(bufs.ledger);
    let mut not_eligible = RowBuf::with_buffer(bufs.not_eligible);
    let mut rejects = RowBuf::with_buffer(bufs.rejects);
    let mut reject_samples = Vec::new();
    let mut n_rejects = 0u64;
    let mut rec = simd_csv::ByteRecord::new();
    let mut ckey = String::new();
    let mut skey = String::new();
    let mut acc_store: Vec<Accrual<'static>> = Vec::new();
    let mut scratch_store: Scratch<'static> = Scratch::default();
    let mut reject = |line: u64, column: &str, value: &str, reason: &str, w: &mut RowBuf| {
        n_rejects += 1;
        if reject_samples.len() < SAMPLES {
            reject_samples.push(Reject {
                file: file.display.clone(),
                line,
                column: column.to_string(),
                value: value.to_string(),
                reason: reason.to_string(),
            });
        }
        w.text(&file.display);
        w.num(line);
        w.text(column);
        w.text(value);
        w.text(reason);
        w.end();
    };
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
        let rec = match row.record {
            Ok(rec) => rec,
            Err(p) => {
                counts.rows += 1;
                counts.rejected += 1;
                reject(line_no, &p.column, &p.value, &p.reason, &mut rejects);
                return;
            }
        };
        counts.rows += 1;
        if rec.len() != n_fields {
            counts.rejected += 1;
            let reason = format!("has {} fields, the header has {n_fields}", rec.len());
            reject(line_no, "(row)", "", &reason, &mut rejects);
            return;
        }
        let line = match layout.parse(rec) {
            Ok(l) => l,
            Err(e) => {
                counts.rejected += 1;
                reject(line_no, &e.column, &e.value, &e.reason, &mut rejects);
                return;
            }
        };
        ingest::id_key_into(line.customer_id, &mut ckey);
        ingest::id_key_into(line.subscription_id, &mut skey);
        if let Some(p) = settings.period {
            if line.charge_start >= p.end {
                counts.dated_after_period += 1;
            }
        }
        let mut accruals: Vec<Accrual<'_>> = recycle(std::mem::take(&mut acc_store));
        let mut scratch: Scratch<'_> = std::mem::take(&mut scratch_store).recycle();
        let (slot, designations) = inputs.index.customer_slot(&ckey);
        let outcome = crate::accrue::accrue_line_with(
            &inputs.rules,
            &inputs.index,
            designations,
            &inputs.designations_display,
            Some(&inputs.attainment),
            &line,
            &ckey,
            &mut scratch,
            &mut accruals,
        );
        let dp = line.currency.minor_units();
        match outcome {
            Outcome::Accrued => {
                counts.accrued += 1;
                fold.note_customer_slot(
                    slot,
                    &ckey,
                    line.customer_name,
                    crate::fold::input_order(chunk.file, line_no),
                );
                for a in &accruals {
                    details.add(a, &ckey, &skey, line.currency);
                    let w = &mut ledger;
                    w.text(a.partner_id);
                    w.text(&ckey);
                    w.text(&inputs.rules.programs[a.program].id);
                    w.text(a.association.as_str());
                    w.text(&skey);
                    w.date(line.charge_start);
                    w.text(&file.display);
                    w.num(line_no);
                    w.decimal(a.basis, dp);
                    w.decimal(a.rate, 1);
                    w.decimal(a.share, 1);
                    w.decimal(a.amount, dp);
                    w.text(line.currency.as_str());
                    match a.designation {
                        Some(d) => w.num(d.line),
                        None => w.empty(),
                    }
                    match a.days {
                        Some((c, t)) => {
                            w.num(c as u64);
                            w.num(t as u64);
                        }
                        None => {
                            w.empty();
                            w.empty();
                        }
                    }
                    w.end();
                }
            }
            Outcome::NotEligible { reason, detail } => {
                counts.note_not_eligible(reason);
                fold.note_customer_slot(
                    slot,
                    &ckey,
                    line.customer_name,
                    crate::fold::input_order(chunk.file, line_no),
                );
                let w = &mut not_eligible;
                w.text(&file.display);
                w.num(line_no);
                w.text(&ckey);
                w.text(&skey);
                w.date(line.charge_start);
                w.decimal(line.subtotal, dp);
                w.text(line.currency.as_str());
                w.text(reason.as_str());
                w.text(&detail);
                w.end();
            }
            Outcome::Rejected {
                column,
                value,
                reason,
            } => {
                counts.rejected += 1;
                reject(line_no, &column, &value, &reason, &mut rejects);
            }
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
    let mut counted = Fold::new(inputs.files.len());
    counted.files[chunk.file] = counts;
    ChunkOutput {
        seq,
        bytes: chunk.data.len() as u64,
        fold: counted,
        ledger: ledger.buf,
        not_eligible: not_eligible.buf,
        rejects: rejects.buf,
        reject_samples,
        n_rejects,
    }
}

/// Progress reporting hooks (the CLI draws a bar; tests pass `()`).
pub trait Progress: Sync {
    fn advance(&self, _bytes: u64, _rows: u64) {}
}
impl Progress for () {}

/// A chunk and its position in the input.
type Job = (u64, Chunk);

/// Streams every billing file through the workers and the sink.
pub fn stream(
    inputs: &Inputs,
    settings: &StreamSettings,
    sink: &mut dyn Sink,
    progress: &dyn Progress,
    prior_rejects: u64,
) -> Result<Streamed, Fatal> {
    let threads = settings.threads.max(1);
    let in_flight = 2 * threads + 2;
    let (chunk_tx, chunk_rx) = bounded::<Job>(in_flight);
    let (res_tx, res_rx) = bounded::<ChunkOutput>(in_flight);
    let (permit_tx, permit_rx) = bounded::<()>(in_flight);
    // Recycled buffers: chunk data (workers -> reader) and outputs (collector -> workers).
    let (spare_in_tx, spare_in_rx) = bounded::<Vec<u8>>(in_flight + threads);
    let (spare_out_tx, spare_out_rx) = bounded::<OutBufs>(in_flight + threads);
    for _ in 0..in_flight {
        let _ = permit_tx.send(());
    }
    let cancel = AtomicBool::new(false);
    let details = SharedDetails::default();

    let mut streamed = std::thread::scope(|s| {
        let reader = s.spawn(|| -> Result<Vec<FileDigest>, Fatal> {
            let chunk_tx = chunk_tx;
            let mut seq = 0u64;
            let mut digests = Vec::with_capacity(inputs.files.len());
            for (i, f) in inputs.files.iter().enumerate() {
                let spare = || {
                    spare_in_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(settings.chunk_size + 64 * 1024))
                };
                let d = ingest::read_chunks(
                    i,
                    f,
                    &inputs.opened[i].header,
                    settings.chunk_size,
                    spare,
                    |c| {
                        if cancel.load(Ordering::Relaxed) || permit_rx.recv().is_err() {
                            return false;
                        }
                        let ok = chunk_tx.send((seq, c)).is_ok();
                        seq += 1;
                        ok
                    },
                )?;
                digests.push(d);
                if cancel.load(Ordering::Relaxed) {
                    break;
                }
            }
            Ok(digests)
        });
        let mut workers = Vec::new();
        for _ in 0..threads {
            let rx = chunk_rx.clone();
            let tx = res_tx.clone();
            let spare_in = spare_in_tx.clone();
            let spare_out = spare_out_rx.clone();
            let details = &details;
            workers.push(s.spawn(move || {
                // Each worker adds the accruals of all its chunks to the shared
                // groups (one key allocation per group, not per group and chunk)
                // and keeps the customer names it saw in a fold of its own,
                // merged with the others' at the end.
                let mut fold = Fold::new(inputs.files.len());
                while let Ok((seq, chunk)) = rx.recv() {
                    let bufs = spare_out.try_recv().unwrap_or_default();
                    let out =
                        process_chunk_into(inputs, settings, seq, &chunk, &mut fold, details, bufs);
                    let mut data = chunk.data;
                    data.clear();
                    let _ = spare_in.try_send(data);
                    if tx.send(out).is_err() {
                        break;
                    }
                }
                fold
            }));
        }
        drop(chunk_rx);
        drop(res_tx);
        drop(spare_in_tx);

        // Collector: consume results in sequence order.
        let mut fold = Fold::new(inputs.files.len());
        let mut pending: BTreeMap<u64, ChunkOutput> = BTreeMap::new();
        let mut next = 0u64;
        let mut rejects = prior_rejects;
        let mut samples = Vec::new();
        let mut failure: Option<Fatal> = None;
        for out in res_rx.iter() {
            if failure.is_some() {
                continue; // drain so that workers finish
            }
            pending.insert(out.seq, out);
            while let Some(out) = pending.remove(&next) {
                next += 1;
                let _ = permit_tx.try_send(());
                rejects += out.n_rejects;
                for r in &out.reject_samples {
                    if samples.len() < SAMPLES {
                        samples.push(r.clone());
                    }
                }
                if let Some(max) = settings.max_rejects {
                    if rejects > max {
                        failure = Some(Fatal::TooManyRejects {
                            count: rejects,
                            max,
                        });
                    }
                }
                if failure.is_none() {
                    if let Err(e) = sink.chunk(&out) {
                        failure = Some(e);
                    }
                }
                let rows: u64 = out.fold.files.iter().map(|f| f.rows).sum();
                progress.advance(out.bytes, rows);
                let mut chunk_fold = out.fold;
                fold.merge_from(&mut chunk_fold);
                let _ = spare_out_tx.try_send(OutBufs {
                    ledger: reuse(out.ledger),
                    not_eligible: reuse(out.not_eligible),
                    rejects: reuse(out.rejects),
                });
                if failure.is_some() {
                    cancel.store(true, Ordering::Relaxed);
                    // Unblock the reader if it waits for a permit.
                    while permit_tx.try_send(()).is_ok() {}
                    break;
                }
            }
        }
        phase_memory("stream read");
        let mut panicked = false;
        for w in workers {
            match w.join() {
                Ok(mut f) => fold.merge_from(&mut f),
                Err(_) => panicked = true,
            }
        }
        let digests = match reader.join() {
            Ok(r) => r,
            Err(_) => Err(Fatal::Input(
                "internal error: the reader thread panicked".into(),
            )),
        };
        if let Some(f) = failure {
            return Err(f);
        }
        if panicked {
            return Err(Fatal::Input(
                "internal error: a worker thread panicked".into(),
            ));
        }
        let digests = digests?;
        Ok(Streamed {
            fold,
            digests,
            rejects: rejects - prior_rejects,
            reject_samples: samples,
        })
    })?;
    streamed.fold.details = details.into_map();
    Ok(streamed)
}

/// With `PORLEDGER_TIMINGS` set, prints the resident and peak memory at the end
/// of a phase (Linux; elsewhere nothing).
pub fn phase_memory(phase: &str) {
    if std::env::var_os("PORLEDGER_TIMINGS").is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    eprintln!(
        "memory: {phase}: rss {}, peak {}",
        field("VmRSS:"),
        field("VmHWM:")
    );
}
