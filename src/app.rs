//! The commands: glue between flags, the pipeline stages and the outputs.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::Serialize;

use crate::accrue::Reason;
use crate::cli::{InputArgs, PdfArgs, RenderArgs, RunArgs, ValidateArgs};
use crate::dates::Period;
use crate::error::Fatal;
use crate::fold::FileCounts;
use crate::ingest::designations::Reject;
use crate::pipeline::{self, ChunkOutput, Inputs, Progress, Sink, StreamSettings, Streamed};
use crate::quality;
use crate::render::csv::{self as rcsv, row, writer};
use crate::render::pdf::{self, PdfManifest, PdfOptions, Renderer};
use crate::render::publish::{self, FileEntry, HashingWriter, Staging};
use crate::statements::{self, StatementSet, SummaryRow};

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// Everything was usable.
    Clean,
    /// Done, but some rows were rejected (or, for `validate`, problems found).
    WithRejects,
}

fn threads(i: &InputArgs) -> usize {
    i.threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1)
}

/// Writes chunk rows into the staging directory's CSV files.
struct FileSink {
    ledger: BufWriter<HashingWriter<File>>,
    not_eligible: BufWriter<HashingWriter<File>>,
    rejects: BufWriter<HashingWriter<File>>,
    dir: std::path::PathBuf,
}

impl FileSink {
    fn new(dir: &Path) -> Result<FileSink, Fatal> {
        let open = |name: &str, header: &[&str]| -> Result<BufWriter<HashingWriter<File>>, Fatal> {
            let p = dir.join(name);
            let f = File::create(&p).map_err(|e| Fatal::io(&p, e))?;
            let mut w = BufWriter::with_capacity(1 << 20, HashingWriter::new(&p, f));
            let mut h = writer(Vec::new());
            let _ = row(&mut h, header);
            let bytes = h.into_inner().unwrap_or_default();
            w.write_all(&bytes).map_err(|e| Fatal::io(&p, e))?;
            Ok(w)
        };
        Ok(FileSink {
            ledger: open("ledger.csv", &rcsv::LEDGER_HEADER)?,
            not_eligible: open("not-eligible.csv", &rcsv::NOT_ELIGIBLE_HEADER)?,
            rejects: open("rejects.csv", &rcsv::REJECTS_HEADER)?,
            dir: dir.to_path_buf(),
        })
    }

    fn rejects(&mut self, rows: &[Reject]) -> Result<(), Fatal> {
        let mut w = writer(Vec::new());
        for r in rows {
            let _ = row(
                &mut w,
                &[&r.file, &r.line.to_string(), &r.column, &r.value, &r.reason],
            );
        }
        let bytes = w.into_inner().unwrap_or_default();
        let p = self.dir.join("rejects.csv");
        self.rejects.write_all(&bytes).map_err(|e| Fatal::io(&p, e))
    }

    fn finish(self) -> Result<(), Fatal> {
        for (w, name) in [
            (self.ledger, "ledger.csv"),
            (self.not_eligible, "not-eligible.csv"),
            (self.rejects, "rejects.csv"),
        ] {
            w.into_inner()
                .map_err(|e| Fatal::io(&self.dir.join(name), e.into_error()))?
                .finish()?;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn chunk(&mut self, out: &ChunkOutput) -> Result<(), Fatal> {
        let d = self.dir.clone();
        self.ledger
            .write_all(&out.ledger)
            .map_err(|e| Fatal::io(&d.join("ledger.csv"), e))?;
        self.not_eligible
            .write_all(&out.not_eligible)
            .map_err(|e| Fatal::io(&d.join("not-eligible.csv"), e))?;
        self.rejects
            .write_all(&out.rejects)
            .map_err(|e| Fatal::io(&d.join("rejects.csv"), e))
    }
}

/// A sink that keeps nothing (validate).
struct NullSink;
impl Sink for NullSink {
    fn chunk(&mut self, _: &ChunkOutput) -> Result<(), Fatal> {
        Ok(())
    }
}

/// The progress bar on stderr.
struct Bar {
    bar: indicatif::ProgressBar,
    rows: AtomicU64,
    start: Instant,
}

impl Bar {
    fn new(total_bytes: u64, visible: bool) -> Bar {
        let target = if visible && std::io::stderr().is_terminal() {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(Some(total_bytes), target);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg} eta {eta}",
        ) {
            bar.set_style(style);
        }
        Bar {
            bar,
            rows: AtomicU64::new(0),
            start: Instant::now(),
        }
    }
}

impl Progress for Bar {
    fn advance(&self, bytes: u64, rows: u64) {
        let total = self.rows.fetch_add(rows, Ordering::Relaxed) + rows;
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        self.bar.inc(bytes);
        self.bar.set_message(format!(
            "{} rows ({:.0} rows/s)",
            group(total),
            total as f64 / secs
        ));
    }
}

/// `1234567` -> `1,234,567`.
pub fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[derive(Serialize)]
struct FileRows {
    file: String,
    format: String,
    rows: u64,
    accrued: u64,
    not_eligible: u64,
    not_eligible_by_reason: BTreeMap<&'static str, u64>,
    rejected: u64,
    dated_after_period: u64,
    balanced: bool,
}

fn file_rows(file: String, format: String, c: &FileCounts) -> FileRows {
    FileRows {
        file,
        format,
        rows: c.rows,
        accrued: c.accrued,
        not_eligible: c.not_eligible,
        not_eligible_by_reason: Reason::ALL
            .iter()
            .map(|r| (r.as_str(), c.not_eligible_by_reason[*r as usize]))
            .collect(),
        rejected: c.rejected,
        dated_after_period: c.dated_after_period,
        balanced: c.balanced(),
    }
}

#[derive(Serialize)]
struct DesignationRows {
    file: String,
    rows: u64,
    accepted: u64,
    rejected: u64,
}

#[derive(Serialize)]
struct RowAccounting {
    billing: Vec<FileRows>,
    total: FileRows,
    designations: DesignationRows,
}

#[derive(Serialize)]
struct CurrencyAmount {
    currency: String,
    accrual_amount: String,
}

#[derive(Serialize)]
struct SummaryJson<'a> {
    period: String,
    statement_date: String,
    rounding: &'static str,
    summary: &'a [SummaryRow],
    totals: Vec<CurrencyAmount>,
    rows: RowAccounting,
    /// Usage rows, attainment and partner metrics (only with `--usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<crate::usage_accrue::UsageJson>,
}

fn accounting(inputs: &Inputs, streamed: &Streamed) -> RowAccounting {
    let billing: Vec<FileRows> = inputs
        .files
        .iter()
        .zip(&streamed.fold.files)
        .zip(&inputs.opened)
        .map(|((f, c), o)| file_rows(f.display.clone(), o.layout.format.as_str().into(), c))
        .collect();
    RowAccounting {
        billing,
        total: file_rows(
            "(all billing files)".into(),
            String::new(),
            &streamed.fold.totals(),
        ),
        designations: DesignationRows {
            file: inputs.designations_display.clone(),
            rows: inputs.designations.rows_read,
            accepted: inputs.index.len() as u64,
            rejected: inputs.designations.rejects.len() as u64,
        },
    }
}

fn totals_by_currency(set: &StatementSet) -> Vec<CurrencyAmount> {
    let mut m: BTreeMap<String, rust_decimal::Decimal> = BTreeMap::new();
    for s in &set.summary {
        *m.entry(s.currency.to_string()).or_default() += s.accrual_amount;
    }
    m.into_iter()
        .map(|(currency, a)| CurrencyAmount {
            currency,
            accrual_amount: a.to_string(),
        })
        .collect()
}

#[derive(Serialize)]
struct Counts {
    billing_rows: u64,
    accrued: u64,
    not_eligible: u64,
    rejected_billing_rows: u64,
    rejected_designation_rows: u64,
    partners: usize,
    customer_statements: usize,
}

#[derive(Serialize)]
struct Manifest {
    tool: &'static str,
    version: &'static str,
    period: String,
    rounding: &'static str,
    inputs: Vec<FileEntry>,
    outputs: Vec<FileEntry>,
    counts: Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    pdf: Option<PdfManifest>,
}

fn print_rejects(samples: &[Reject], total: u64) {
    if samples.is_empty() {
        return;
    }
    eprintln!("first rejects ({} in all):", group(total));
    for r in samples {
        eprintln!(
            "  {}:{} column '{}' value '{}': {}",
            r.file, r.line, r.column, r.value, r.reason
        );
    }
}

fn print_accounting(acc: &RowAccounting) {
    let t = &acc.total;
    eprintln!(
        "rows: {} read = {} accrued + {} not eligible + {} rejected{}",
        group(t.rows),
        group(t.accrued),
        group(t.not_eligible),
        group(t.rejected),
        if t.balanced {
            ""
        } else {
            "  (DOES NOT ADD UP: please report)"
        }
    );
    let reasons: Vec<String> = t
        .not_eligible_by_reason
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {}", group(*n)))
        .collect();
    if !reasons.is_empty() {
        eprintln!("not eligible: {}", reasons.join(", "));
    }
    if t.dated_after_period > 0 {
        eprintln!(
            "warning: {} charges are dated after the end of the period",
            group(t.dated_after_period)
        );
    }
    let d = &acc.designations;
    eprintln!(
        "designations: {} rows = {} accepted + {} rejected",
        group(d.rows),
        group(d.accepted),
        group(d.rejected)
    );
}

/// The FX table, the reporting currency, the table's rejects and its row count.
type Fx = (
    crate::ingest::fx::FxTable,
    crate::money::Currency,
    Vec<Reject>,
    u64,
);

fn load_fx(args: &RunArgs, inputs: &Inputs) -> Result<Option<Fx>, Fatal> {
    let Some(path) = &args.fx else {
        return Ok(None);
    };
    let currency = match &args.reporting_currency {
        Some(c) => crate::money::Currency::parse(c)
            .ok_or_else(|| Fatal::Input(format!("--reporting-currency '{c}' is not a three-letter currency code")))?,
        None => inputs.rules.reporting_currency.ok_or_else(|| {
            Fatal::Input("--fx needs a reporting currency: --reporting-currency EUR or reporting_currency in the rules".into())
        })?,
    };
    let (table, rejects, rows) = crate::ingest::fx::load_fx(path)?;
    Ok(Some((table, currency, rejects, rows)))
}

/// Loads the PDF template before any work, so a broken template fails fast.
fn renderer(a: &PdfArgs) -> Result<(Renderer, PdfOptions), Fatal> {
    let r = Renderer::load(a.template.as_deref(), &a.locale)?;
    let o = PdfOptions {
        transparency_by_customer: a.transparency_by_customer,
    };
    Ok((r, o))
}

/// `porledger run`.
pub fn run(args: &RunArgs) -> Result<Finish, Fatal> {
    let renderer = if args.no_pdf {
        None
    } else {
        Some(renderer(&args.pdf)?)
    };
    let parquet_ledger = args.ledger_format == crate::cli::LedgerFormat::Parquet;
    if parquet_ledger && !crate::render::parquet::AVAILABLE {
        return Err(crate::ingest::parquet::feature_missing(
            "--ledger-format parquet",
        ));
    }
    let inputs = load(&args.inputs)?;
    crate::pipeline::phase_memory("inputs loaded");
    let n_threads = threads(&args.inputs);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .build()
        .map_err(|e| Fatal::Input(format!("cannot start {n_threads} threads: {e}")))?;
    let settings = StreamSettings {
        threads: n_threads,
        chunk_size: args.inputs.chunk_bytes.max(4096),
        period: Some(args.period),
        max_rejects: Some(args.max_rejects),
    };
    let fx = load_fx(args, &inputs)?;
    let staging = Staging::new(&args.out)?;
    let mut sink = FileSink::new(&staging.dir)?;
    let mut early_rejects = inputs.designations.rejects.clone();
    early_rejects.extend(inputs.usage.rejects.iter().cloned());
    if let Some((_, _, r, _)) = &fx {
        early_rejects.extend(r.iter().cloned());
    }
    sink.rejects(&early_rejects)?;
    let prior = early_rejects.len() as u64;
    if prior > args.max_rejects {
        if !args.quiet {
            print_rejects(&early_rejects[..early_rejects.len().min(20)], prior);
        }
        return Err(Fatal::TooManyRejects {
            count: prior,
            max: args.max_rejects,
        });
    }
    let total_bytes: u64 = inputs.files.iter().map(|f| f.size).sum();
    let bar = Bar::new(total_bytes, !args.quiet);
    let mut streamed = match pipeline::stream(&inputs, &settings, &mut sink, &bar, prior) {
        Ok(s) => s,
        Err(e) => {
            bar.bar.finish_and_clear();
            return Err(e);
        }
    };
    bar.bar.finish_and_clear();
    let t_stream = bar.start.elapsed();
    crate::pipeline::phase_memory("streamed");
    let mut usage_run = crate::usage_accrue::accrue_usage(&inputs, args.period);
    sink.chunk(&usage_run.output)?;
    sink.finish()?;
    if parquet_ledger {
        crate::render::parquet::convert_ledger(&staging.dir)?;
    }
    // Usage accruals join the billing fold (their file counts are kept apart).
    streamed
        .fold
        .merge(std::mem::take(&mut usage_run.output.fold));
    let reporting = fx
        .as_ref()
        .map(|(table, currency, _, _)| statements::Reporting {
            fx: table,
            currency: *currency,
        });
    let groups = streamed.fold.details.len();
    let mut set = statements::build(
        &mut streamed.fold,
        &inputs.rules,
        &inputs.index,
        args.period,
        reporting.as_ref(),
    )
    .map_err(|m| Fatal::Config {
        file: args
            .fx
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        message: format!(
            "no {}->{} rate on or before {} (the statement date): add one to convert the {} totals",
            m.from, m.to, m.on, m.from
        ),
    })?;
    crate::pipeline::phase_memory("statements built");
    let partner_usage = if inputs.usage.files.is_empty() {
        Vec::new()
    } else {
        crate::attain::partner_usage(&inputs, args.period)
    };
    crate::usage_accrue::attach(&mut set, &partner_usage, &inputs.attainment.tier_notes());
    // The statements hold everything the groups said (`build` took the groups);
    // free the customer names too before the writing starts.
    let (_, customers) = streamed.fold.release_groups();
    crate::pipeline::phase_memory("groups released");
    let acc = accounting(&inputs, &streamed);
    if !acc.total.balanced || !usage_run.total.balanced {
        return Err(Fatal::Input(
            "internal error: row accounting does not add up; nothing was published".into(),
        ));
    }
    let dir = staging.dir.clone();
    // Writing thousands of small files waits on the disk, not the CPU.
    let io_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(publish::IO_THREADS)
        .build()
        .map_err(|e| Fatal::Input(format!("cannot start I/O threads: {e}")))?;
    io_pool.install(|| rcsv::write_statements(&dir, &set))?;
    rcsv::write_summary(&dir.join("summary.csv"), &set)?;
    if !inputs.usage.files.is_empty() {
        crate::usage_accrue::write_attainment(&dir, &inputs, args.period)?;
        crate::usage_accrue::write_partner_attainment(&dir, &inputs, &partner_usage, args.period)?;
    }
    publish::write_json_compact(&dir.join("statements.json"), &set)?;
    let pdf_manifest = match &renderer {
        Some((r, o)) => Some(pool.install(|| pdf::render_run(&dir, &set, r, *o))?),
        None => None,
    };
    publish::write_json(
        &dir.join("summary.json"),
        &SummaryJson {
            period: args.period.label(),
            statement_date: args.period.last_day().to_string(),
            rounding: set.rounding.as_str(),
            summary: &set.summary,
            totals: totals_by_currency(&set),
            rows: accounting(&inputs, &streamed),
            usage: (!inputs.usage.files.is_empty()).then(|| {
                crate::usage_accrue::usage_json(&usage_run, &partner_usage, &inputs, args.period)
            }),
        },
    )?;
    let mut extra = Vec::new();
    if let Some(path) = &args.fx {
        let d = crate::ingest::sha256_file(path)?;
        extra.push(FileEntry {
            path: path.to_string_lossy().into_owned(),
            sha256: d.sha256,
            bytes: d.bytes,
            role: Some("fx".into()),
            format: None,
        });
    }
    let t_statements = bar.start.elapsed();
    crate::pipeline::phase_memory("written");
    write_manifest(
        &dir,
        &inputs,
        &streamed,
        &set,
        args.period,
        extra,
        pdf_manifest,
    )?;
    let t_manifest = bar.start.elapsed();
    staging.commit()?;
    if std::env::var_os("PORLEDGER_TIMINGS").is_some() {
        eprintln!(
            "timings: stream {t_stream:?}, statements {t_statements:?}, manifest {t_manifest:?}, total {:?}, groups {}, customers {}",
            bar.start.elapsed(),
            groups,
            customers
        );
    }
    let rejected = prior + streamed.rejects;
    if !args.quiet {
        print_accounting(&acc);
        if !inputs.usage.files.is_empty() {
            let t = &usage_run.total;
            eprintln!(
                "usage rows: {} read = {} accrued + {} not eligible + {} rejected",
                group(t.rows),
                group(t.accrued),
                group(t.not_eligible),
                group(t.rejected)
            );
        }
        let mut samples = early_rejects.iter().take(20).cloned().collect::<Vec<_>>();
        samples.extend(
            streamed
                .reject_samples
                .iter()
                .take(20 - samples.len())
                .cloned(),
        );
        print_rejects(&samples, rejected);
        for t in totals_by_currency(&set) {
            eprintln!("accrued: {} {}", t.currency, t.accrual_amount);
        }
        eprintln!(
            "published {} partner statements to {}",
            set.partners.len(),
            args.out.display()
        );
    }
    Ok(if rejected > 0 {
        Finish::WithRejects
    } else {
        Finish::Clean
    })
}

fn write_manifest(
    dir: &Path,
    inputs: &Inputs,
    streamed: &Streamed,
    set: &StatementSet,
    period: Period,
    extra_inputs: Vec<FileEntry>,
    pdf: Option<PdfManifest>,
) -> Result<(), Fatal> {
    let mut ins = Vec::new();
    for ((f, d), o) in inputs
        .files
        .iter()
        .zip(&streamed.digests)
        .zip(&inputs.opened)
    {
        ins.push(FileEntry {
            path: f.display.clone(),
            sha256: d.sha256.clone(),
            bytes: d.bytes,
            role: Some("billing".into()),
            format: Some(o.layout.format.as_str().into()),
        });
    }
    for u in &inputs.usage.files {
        ins.push(FileEntry {
            path: u.input.display.clone(),
            sha256: u.digest.sha256.clone(),
            bytes: u.digest.bytes,
            role: Some("usage".into()),
            format: Some(u.format.as_str().into()),
        });
    }
    ins.push(FileEntry {
        path: inputs.designations_display.clone(),
        sha256: inputs.designations_digest.sha256.clone(),
        bytes: inputs.designations_digest.bytes,
        role: Some("designations".into()),
        format: None,
    });
    ins.push(FileEntry {
        path: inputs.rules_path.to_string_lossy().into_owned(),
        sha256: inputs.rules_digest.sha256.clone(),
        bytes: inputs.rules_digest.bytes,
        role: Some("rules".into()),
        format: None,
    });
    ins.extend(extra_inputs);
    let t = streamed.fold.totals();
    let manifest = Manifest {
        tool: "porledger",
        version: env!("CARGO_PKG_VERSION"),
        period: period.label(),
        rounding: set.rounding.as_str(),
        inputs: ins,
        outputs: publish::hash_outputs(dir)?,
        counts: Counts {
            billing_rows: t.rows,
            accrued: t.accrued,
            not_eligible: t.not_eligible,
            rejected_billing_rows: t.rejected,
            rejected_designation_rows: inputs.designations.rejects.len() as u64,
            partners: set.partners.len(),
            customer_statements: set.partners.iter().map(|p| p.customers.len()).sum(),
        },
        pdf,
    };
    publish::write_json(&dir.join("manifest.json"), &manifest)
}

/// `porledger render`: re-renders the PDFs of a finished run.
pub fn render(args: &RenderArgs) -> Result<Finish, Fatal> {
    let (r, o) = renderer(&args.pdf)?;
    let n = args
        .threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| Fatal::Input(format!("cannot start {n} threads: {e}")))?;
    let m = pdf::rerender(&args.out, &r, o, &pool)?;
    if !args.quiet {
        eprintln!(
            "rendered {} PDF statements ({}, template {}) to {}",
            m.documents,
            m.template.locale,
            m.template.name,
            args.out.display()
        );
    }
    Ok(Finish::Clean)
}

/// Reads rules, designations, billing headers and usage: everything `run` and
/// `validate` need before streaming.
fn load(a: &InputArgs) -> Result<Inputs, Fatal> {
    let mut inputs = pipeline::load_inputs(&a.billing, &a.designations, &a.rules)?;
    if !a.allow_duplicate_inputs {
        crate::ingest::check_duplicate_inputs(&inputs.files)?;
    }
    crate::attain::prepare(&mut inputs, &a.usage, a.usage_tenant_map.as_deref())?;
    Ok(inputs)
}

/// `porledger validate`: prints a data-quality report to stdout.
pub fn validate(args: &ValidateArgs) -> Result<Finish, Fatal> {
    let inputs = load(&args.inputs)?;
    let settings = StreamSettings {
        threads: threads(&args.inputs),
        chunk_size: args.inputs.chunk_bytes.max(4096),
        period: args.period,
        max_rejects: None,
    };
    let streamed = pipeline::stream(&inputs, &settings, &mut NullSink, &(), 0)?;
    let issues = quality::check_designations(inputs.index.rows(), &inputs.designations_display);
    let acc = accounting(&inputs, &streamed);
    let out = std::io::stdout();
    let mut o = out.lock();
    let w = |o: &mut std::io::StdoutLock, s: String| {
        let _ = writeln!(o, "{s}");
    };
    w(&mut o, "porledger data-quality report".into());
    w(&mut o, String::new());
    w(&mut o, "billing files:".into());
    for ((f, op), input) in acc.billing.iter().zip(&inputs.opened).zip(&inputs.files) {
        w(
            &mut o,
            format!(
                "  {}: {} ({}{}), {} rows: {} would accrue, {} not eligible, {} rejected",
                f.file,
                f.format,
                match op.layout.delimiter {
                    _ if crate::ingest::parquet::is_parquet(&input.path) => "Parquet",
                    b';' => "semicolon-separated",
                    b'\t' => "tab-separated",
                    _ => "comma-separated",
                },
                if op.layout.decimal_comma {
                    ", decimal commas"
                } else {
                    ""
                },
                group(f.rows),
                group(f.accrued),
                group(f.not_eligible),
                group(f.rejected)
            ),
        );
    }
    let t = &acc.total;
    let reasons: Vec<String> = t
        .not_eligible_by_reason
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {}", group(*n)))
        .collect();
    if !reasons.is_empty() {
        w(
            &mut o,
            format!("  not eligible by reason: {}", reasons.join(", ")),
        );
    }
    if t.dated_after_period > 0 {
        w(
            &mut o,
            format!(
                "  warning: {} charges dated after the end of the period",
                group(t.dated_after_period)
            ),
        );
    }
    let d = &acc.designations;
    w(&mut o, String::new());
    w(
        &mut o,
        format!(
            "designations: {}: {} rows, {} usable, {} rejected",
            d.file,
            group(d.rows),
            group(d.accepted),
            group(d.rejected)
        ),
    );
    if !inputs.usage.files.is_empty() {
        let counts = match args.period {
            Some(p) => crate::usage_accrue::accrue_usage(&inputs, p).files,
            None => crate::usage_accrue::read_counts(&inputs),
        };
        w(&mut o, String::new());
        w(&mut o, "usage files:".into());
        for c in &counts {
            let mut line = format!(
                "  {}: {}, {} rows, {} rejected",
                c.file,
                c.format,
                group(c.rows),
                group(c.rejected)
            );
            if args.period.is_some() {
                let reasons: Vec<String> = c
                    .not_eligible_by_reason
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(r, n)| format!("{r} {}", group(*n)))
                    .collect();
                line.push_str(&format!(
                    ", {} would accrue, {} not eligible{}",
                    group(c.accrued),
                    group(c.not_eligible),
                    if reasons.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", reasons.join(", "))
                    }
                ));
            }
            w(&mut o, line);
        }
    }
    let mut problems: Vec<String> = Vec::new();
    for r in inputs
        .designations
        .rejects
        .iter()
        .chain(&inputs.usage.rejects)
        .chain(&streamed.reject_samples)
    {
        problems.push(format!(
            "{}:{} column '{}' value '{}': {}",
            r.file, r.line, r.column, r.value, r.reason
        ));
    }
    for i in &issues {
        problems.push(i.to_string());
    }
    let n_problems = inputs.designations.rejects.len() as u64
        + inputs.usage.rejects.len() as u64
        + streamed.rejects
        + issues.len() as u64;
    w(&mut o, String::new());
    if n_problems == 0 {
        w(&mut o, "no problems found".into());
        return Ok(Finish::Clean);
    }
    w(&mut o, format!("{} problems:", group(n_problems)));
    for p in problems.iter().take(args.show) {
        w(&mut o, format!("  {p}"));
    }
    if (args.show as u64) < n_problems {
        w(
            &mut o,
            format!(
                "  ... {} more (raise --show to list them)",
                group(n_problems - args.show.min(problems.len()) as u64)
            ),
        );
    }
    Ok(Finish::WithRejects)
}

/// `porledger explain`: prints to stdout.
pub fn explain(args: &crate::cli::ExplainArgs) -> Result<Finish, Fatal> {
    let filter = crate::explain::Filter {
        partner: args.partner.clone(),
        customer: args.customer.clone(),
        program: args.program.clone(),
    };
    let record = crate::explain::load(&args.out, &filter)?;
    let text = crate::explain::render_explanation(&record, &filter);
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(Fatal::Io {
                path: "stdout".into(),
                source: e,
            });
        }
    }
    Ok(Finish::Clean)
}
