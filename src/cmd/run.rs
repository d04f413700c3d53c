//! `porledger run`: load -> stream -> build statements -> render -> publish.

use std::time::{Duration, Instant};

use crate::attain::PartnerUsage;
use crate::cli::RunArgs;
use crate::cmd::{load, pool, renderer, Finish};
use crate::console::{self, Bar, RunSummary, Timings};
use crate::error::Fatal;
use crate::history::{ClosedLookup, FileRec, History, RunHistory};
use crate::ingest::designations::Reject;
use crate::ingest::fx::FxTable;
use crate::money::Currency;
use crate::pipeline::UsageRun;
use crate::pipeline::{self, Inputs, Streamed};
use crate::render::attainment;
use crate::render::closed;
use crate::render::csv as rcsv;
use crate::render::journal::Journal;
use crate::render::json::StatementsJson;
use crate::render::pdf;
use crate::render::publish::{self, FileEntry, Staging};
use crate::render::sink::FileSink;
use crate::render::summary::{self, RowAccounting, SummaryJson};
use crate::settings::RunSettings;
use crate::statements::{self, StatementSet};

/// The FX table and the reporting currency, with the table's rejects.
struct Fx {
    table: FxTable,
    currency: Currency,
    rejects: Vec<Reject>,
    /// Its rows (for the row accounting) and its name as given.
    rows: u64,
    file: String,
}

/// What the stream and the usage accruals left for the statements.
struct Rows {
    streamed: Streamed,
    usage: UsageRun,
    /// Rejects before the stream (designations, usage, FX).
    early_rejects: Vec<Reject>,
    /// Billing groups before the statements took them (timings).
    groups: usize,
    /// The progress bar, finished; its clock times the phases.
    bar: Bar,
}

pub fn run(args: &RunArgs) -> Result<Finish, Fatal> {
    let s = RunSettings::new(args)?;
    // A history that cannot be used fails before any work.
    let history = match &s.history {
        Some(p) => Some(History::open_read(p)?),
        None => None,
    };
    // A period that shares months with a closed period of another label can
    // never be closed (its lines would be issued twice): refused before any
    // work, as `close` would refuse it.
    if let Some(Some(h)) = &history {
        h.refuse_overlap(&s.period.label())?;
    }
    // An output `close` issued is never replaced: it holds the statements
    // that were sent. `close` marks it (closed.json); with the history, an
    // output whose manifest is a recorded close is known even unmarked.
    let instead = "Write this run (a restatement too) to a new --out.";
    closed::refuse_issued(&s.out, "run", "them", instead)?;
    if let (Some(Some(h)), Some(sha)) = (&history, closed::manifest_sha256(&s.out)) {
        if let Some((period, version)) = h.issued_as(&sha)? {
            return Err(Fatal::Input(format!(
                "--out {}: holds the statements issued as {period} version {version} in {} (its \
                 manifest.json is the one close recorded); issued statements never change, so \
                 run refuses to replace them and nothing was changed. {instead}",
                s.out.display(),
                h.path().display()
            )));
        }
    }
    // What the manifest records of the history for `close`: the closes read
    // and, when the period is closed, the version this run restates (read
    // once, here: the restatement below compares with that version).
    let run_history = match (&s.history, &history) {
        (Some(p), Some(h)) => {
            let mut rh = match h {
                Some(h) => h.run_history(&s.period.label())?,
                None => RunHistory::empty(),
            };
            rh.file = Some(p.to_string_lossy().into_owned());
            Some(rh)
        }
        _ => None,
    };
    let renderer = s.pdf.as_ref().map(renderer).transpose()?;
    let closed = closed_marks(history.as_ref().and_then(Option::as_ref))?;
    let mut inputs = load(&s.inputs, &closed)?;
    refuse_partner_spellings(&inputs)?;
    // With a history, each accrued billing line's source keys are published
    // for `close` (a run without one pays nothing for them).
    inputs.source_keys = history.is_some();
    // Credits are looked up in the closed periods through a connection of
    // their own, in one read transaction for the whole run.
    if let Some(p) = &s.history {
        if let Some(h) = History::open_read(p)? {
            inputs.closed = Some(Box::new(ClosedLookup::new(h, Some(s.period.label()))?));
        }
    }
    console::phase_memory("inputs loaded");
    let pool = pool(s.inputs.threads)?;
    let fx = load_fx(&s, &inputs)?;
    let staging = Staging::new(&s.out, publish::Kind::Run)?;
    let mut rows = stream_rows(&s, &inputs, fx.as_ref(), &staging)?;
    let t_stream = rows.bar.elapsed();
    let mut acc = summary::accounting(&inputs, &rows.streamed);
    acc.fx = fx.as_ref().map(|f| summary::DesignationRows {
        file: f.file.clone(),
        rows: f.rows,
        accepted: f.rows.saturating_sub(f.rejects.len() as u64),
        rejected: f.rejects.len() as u64,
    });
    if !acc.total.balanced || !rows.usage.total.balanced {
        return Err(Fatal::Input(
            "internal error: row accounting does not add up; nothing was published".into(),
        ));
    }
    let partner_usage = if inputs.usage.files.is_empty() {
        Vec::new()
    } else {
        crate::attain::partner_usage(&inputs.usage_view(), s.period)
    };
    let h = history.as_ref().and_then(Option::as_ref);
    // A partner paid only through a reversal may be in no designation any
    // more: its statement carries the name the history issued it under.
    let known_names = match h {
        Some(h) => h.partner_names()?,
        None => Default::default(),
    };
    let restates = run_history.as_ref().and_then(|r| r.restates);
    let by_customer = renderer
        .as_ref()
        .is_some_and(|(_, o)| o.transparency_by_customer);
    let keep = if by_customer {
        Keep::All
    } else if restates.is_some() {
        Keep::Lines
    } else {
        Keep::Nothing
    };
    let out = Outputs {
        staging: &staging,
        renderer: renderer.as_ref().map(|(r, _)| r),
        partner_usage: &partner_usage,
        known_names: &known_names,
        keep,
    };
    let mut issued =
        pool.install(|| write_statements(&s, &inputs, &mut rows.streamed, fx.as_ref(), &out))?;
    let (_, customers) = rows.streamed.fold.release_groups();
    console::phase_memory("statements written");
    let set = &issued.head;
    let dir = staging.dir.clone();
    write_other_outputs(&s, &inputs, &partner_usage, &staging)?;
    let adjustments = match (h, restates) {
        (Some(h), Some(version)) => {
            Some(restatement(&s, &inputs, &rows, set, h, version, &staging)?)
        }
        _ => None,
    };
    let pdf_manifest = match &renderer {
        Some((r, o)) => {
            if o.transparency_by_customer {
                issued.documents += pool
                    .install(|| pdf::write_customer_pdfs(&dir, set, r, &staging.files))?
                    .len();
            }
            if let Some(a) = &adjustments {
                issued.documents += pool.install(|| {
                    crate::render::adjustment::write_adjustment_pdfs(
                        &dir,
                        a,
                        set,
                        r,
                        &staging.files,
                    )
                })?;
            }
            Some(pdf::PdfManifest::new(r, *o, issued.documents))
        }
        None => None,
    };
    console::phase_memory("PDFs written");
    write_summary_json(&s, &inputs, &rows, &acc, &partner_usage, set, &staging)?;
    let extra = fx_entry(&s)?;
    let t_statements = rows.bar.elapsed();
    console::phase_memory("written");
    let period = s.period;
    summary::write_manifest(
        &staging,
        &inputs,
        &rows.streamed,
        &issued.counts,
        period,
        summary::ManifestExtras {
            inputs: extra,
            pdf: pdf_manifest,
            history: run_history,
        },
    )?;
    let t_manifest = rows.bar.elapsed();
    staging.commit()?;
    console::timings(&Timings {
        stream: t_stream,
        statements: t_statements,
        statement_stages: issued.stages,
        manifest: t_manifest,
        total: rows.bar.elapsed(),
        groups: rows.groups,
        customers,
    });
    let rejected = rows.early_rejects.len() as u64 + rows.streamed.rejects;
    if !s.quiet {
        print_summary(&s, &inputs, &rows, &acc, &issued, rejected);
    }
    Ok(if rejected > 0 {
        Finish::WithRejects
    } else {
        Finish::Clean
    })
}

/// A partner ID spelled in two letter cases in the designations is refused
/// before any work: its statements could never be published (see
/// [`crate::quality::partner_spellings`]; `validate` lists the same problem).
fn refuse_partner_spellings(inputs: &Inputs) -> Result<(), Fatal> {
    let issues =
        crate::quality::partner_spellings(inputs.index.rows(), &inputs.designations_display);
    if issues.is_empty() {
        return Ok(());
    }
    let listed: Vec<String> = issues.iter().map(ToString::to_string).collect();
    // One line (a message is shown as one; a newline in it would be
    // escaped): the problems, then what happened.
    Err(Fatal::Input(format!(
        "{}; nothing was published (porledger validate lists these problems)",
        listed.join("; ")
    )))
}

/// `--fx`: reads the FX table and settles the reporting currency.
fn load_fx(s: &RunSettings, inputs: &Inputs) -> Result<Option<Fx>, Fatal> {
    let Some(fx) = &s.fx else {
        return Ok(None);
    };
    let currency = match fx.currency {
        Some(c) => c,
        None => inputs.rules.reporting_currency.ok_or_else(|| {
            Fatal::Input("--fx needs a reporting currency: --reporting-currency EUR or reporting_currency in the rules".into())
        })?,
    };
    let (table, rejects, rows) = crate::ingest::fx::load_fx(&fx.path)?;
    Ok(Some(Fx {
        table,
        currency,
        rejects,
        rows,
        file: fx.path.to_string_lossy().into_owned(),
    }))
}

/// Streams the billing rows and the usage accruals into the row files of the
/// staging directory; usage accruals join the billing fold.
fn stream_rows(
    s: &RunSettings,
    inputs: &Inputs,
    fx: Option<&Fx>,
    staging: &Staging,
) -> Result<Rows, Fatal> {
    let mut sink = FileSink::new(&staging.dir, &staging.files, inputs.source_keys)?;
    let mut early_rejects = inputs.designations.rejects.clone();
    early_rejects.extend(inputs.usage.rejects.iter().cloned());
    if let Some(fx) = fx {
        early_rejects.extend(fx.rejects.iter().cloned());
    }
    sink.rejects(&early_rejects)?;
    let prior = early_rejects.len() as u64;
    // More rejects than --max-rejects: the first of them (those of the
    // designations, usage and FX, then the billing lines'), listed before
    // the error that says so.
    let too_many = |count: u64, samples: &[crate::ingest::designations::Reject]| {
        let samples: Vec<_> = early_rejects
            .iter()
            .chain(samples)
            .take(20)
            .cloned()
            .collect();
        if !s.quiet {
            console::print_rejects(&samples, count);
        }
        Fatal::TooManyRejects {
            count,
            max: s.max_rejects,
            samples,
        }
    };
    if prior > s.max_rejects {
        return Err(too_many(prior, &[]));
    }
    let bar = Bar::new(inputs.files.iter().map(|f| f.size).sum(), !s.quiet);
    let mut settings = s.inputs.stream(Some(s.period), Some(s.max_rejects));
    // Past the budget, groups are sorted into run files in the staging
    // directory (porledger's own), removed once merged into the statements.
    settings.spill = Some(pipeline::SpillSettings {
        dir: staging.dir.join(".spill"),
        after_groups: s.spill_after,
    });
    let streamed = pipeline::stream(inputs, &settings, &mut sink, &bar, prior);
    bar.finish();
    let mut streamed = streamed.map_err(|e| match e {
        Fatal::TooManyRejects { count, samples, .. } => too_many(count, &samples),
        e => e,
    })?;
    console::phase_memory("streamed");
    // One partner in two letter cases on billing lines: refused before any
    // statement is written, naming the lines.
    if let Some(p) = crate::pipeline::partner_spelling_problems(inputs, &streamed.fold)
        .into_iter()
        .next()
    {
        return Err(Fatal::Input(format!("{p}; nothing was published")));
    }
    let usage = std::mem::take(&mut streamed.usage);
    sink.finish()?;
    if s.parquet_ledger {
        crate::render::parquet::convert_ledger(&staging.dir)?;
    }
    // Counted once per run file a group is in, and once in memory.
    let groups = streamed.fold.details.len() + streamed.runs.groups() as usize;
    Ok(Rows {
        streamed,
        usage,
        early_rejects,
        groups,
        bar,
    })
}

/// Which statements stay in memory after they are written: every one only
/// for what needs them all at the end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Nothing (the default: memory holds one batch of partners).
    Nothing,
    /// Each partner's lines and designations, not its details: a restatement
    /// compares them with the issued version.
    Lines,
    /// Everything: `--transparency-by-customer` prints each customer's
    /// statements of every partner in one document.
    All,
}

/// Where and how the statements are written.
struct Outputs<'a> {
    staging: &'a Staging,
    renderer: Option<&'a pdf::Renderer>,
    partner_usage: &'a [PartnerUsage],
    known_names: &'a std::collections::BTreeMap<String, String>,
    keep: Keep,
}

/// The statements as written.
struct Issued {
    /// The run's period, rounding, programs and summary rows, and the
    /// partners [`Keep`] kept.
    head: StatementSet,
    counts: summary::Issued,
    /// PDFs written.
    documents: usize,
    /// Where the statement phase's wall time went.
    stages: console::StatementStages,
}

/// Builds the statements from the fold's groups (converted with `--fx`), a
/// batch of partners at a time, and writes each batch before the next is
/// built: the partner and customer statement CSVs, the batch's part of
/// `statements.json` and `journal.csv`, and (with `--pdf`) its PDFs; then
/// `summary.csv`. Memory holds one batch, not every statement of the run.
fn write_statements(
    s: &RunSettings,
    inputs: &Inputs,
    streamed: &mut Streamed,
    fx: Option<&Fx>,
    out: &Outputs<'_>,
) -> Result<Issued, Fatal> {
    let (dir, files) = (&out.staging.dir, &out.staging.files);
    // Writing thousands of small files waits on the disk, not the CPU.
    let io_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(publish::IO_THREADS)
        .build()
        .map_err(|e| Fatal::Input(format!("cannot start I/O threads: {e}")))?;
    let reporting = fx.map(|f| statements::Reporting {
        fx: &f.table,
        currency: f.currency,
    });
    let builder = statements::Builder {
        rules: &inputs.rules,
        index: &inputs.index,
        period: s.period,
        reporting: reporting.as_ref(),
        batch_groups: s.batch_groups,
    };
    let started = Instant::now();
    // The groups still in memory and the runs spilled to disk, merged.
    let mut groups = crate::spill::partner_groups(
        std::mem::take(&mut streamed.fold.details),
        std::mem::take(&mut streamed.runs),
    );
    groups.prepare()?;
    // Wall time spent merging (here, and waiting for the next partner's
    // groups), and writing.
    let mut waited = started.elapsed();
    let mut written = Duration::ZERO;
    let fold = &streamed.fold;
    let tier_notes = fold.tier_notes.to_vec();
    let mut issued = Issued {
        head: StatementSet {
            period: s.period,
            rounding: inputs.rules.rounding,
            partners: Vec::new(),
            summary: Vec::new(),
            programs: statements::program_info(&inputs.rules),
        },
        counts: summary::Issued {
            partners: 0,
            customer_statements: 0,
        },
        documents: 0,
        stages: console::StatementStages::default(),
    };
    let mut json = StatementsJson::begin(files, &dir.join("statements.json"), &issued.head)?;
    let mut journal = Journal::new(s.period, &inputs.rules.journal)?;
    let threads = rayon::current_num_threads();
    let mut build = |groups: &mut dyn Iterator<Item = Result<Vec<_>, Fatal>>| {
        let groups = std::iter::from_fn(|| {
            let t = Instant::now();
            let g = groups.next();
            waited += t.elapsed();
            g
        });
        statements::build_each(
            groups,
            &|c| fold.customer_name(c),
            &builder,
            |e| statement_error(s, fx, e),
            |mut batch| {
                let t = Instant::now();
                statements::fill_partner_names(&mut batch, out.known_names);
                statements::attach_usage(&mut batch, out.partner_usage, &tier_notes);
                // The batch's CSVs (on the I/O threads, waiting on the disk) and
                // its part of `statements.json` and the journal (on the pool) at
                // the same time: each file is still written in one order.
                let (csvs, rest) = rayon::join(
                    || io_pool.install(|| rcsv::write_statements(dir, &batch, files)),
                    || -> Result<(), Fatal> {
                        json.partners(&batch.partners)?;
                        journal.add(&batch)
                    },
                );
                csvs?;
                rest?;
                if let Some(r) = out.renderer {
                    issued.documents += pdf::write_partner_pdfs(dir, &batch, r, files)?.len();
                }
                let c = &mut issued.counts;
                c.partners += batch.partners.len();
                c.customer_statements += batch
                    .partners
                    .iter()
                    .map(|p| p.customers.len())
                    .sum::<usize>();
                issued.head.summary.extend(batch.summary);
                match out.keep {
                    Keep::Nothing => {}
                    Keep::Lines => {
                        issued
                            .head
                            .partners
                            .extend(batch.partners.into_iter().map(|mut p| {
                                for c in &mut p.customers {
                                    c.details = Vec::new();
                                }
                                p
                            }))
                    }
                    Keep::All => issued.head.partners.extend(batch.partners),
                }
                written += t.elapsed();
                Ok(())
            },
        )
    };
    // With more than one thread, the merge runs ahead on a thread of its own.
    if threads > 1 {
        crate::spill::merged_ahead(groups, 2 * threads, build)?;
    } else {
        build(&mut groups)?;
    }
    let t = Instant::now();
    statements::sort_summary(&mut issued.head.summary);
    json.finish(&issued.head)?;
    journal.write(dir, files)?;
    rcsv::write_summary(&dir.join("summary.csv"), &issued.head)?;
    written += t.elapsed();
    let total = started.elapsed();
    issued.stages = console::StatementStages {
        merge: waited,
        build: total.saturating_sub(waited + written),
        write: written,
    };
    Ok(issued)
}

/// A statement that cannot be built, as the error `run` reports.
fn statement_error(s: &RunSettings, fx: Option<&Fx>, e: statements::StatementError) -> Fatal {
    match e {
        statements::StatementError::MissingRate(m) => {
            // Nothing is published, so the FX rows that were rejected (and
            // may be the missing rate) are named here.
            let rejected: Vec<String> = fx
                .map(|f| &f.rejects[..])
                .unwrap_or_default()
                .iter()
                .take(3)
                .map(|r| format!("line {} ({} '{}': {})", r.line, r.column, r.value, r.reason))
                .collect();
            let n = fx.map_or(0, |f| f.rejects.len());
            let note = match n {
                0 => String::new(),
                _ => format!(
                    "; {n} row{} of the FX file {} rejected: {}{}",
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "was" } else { "were" },
                    rejected.join("; "),
                    if n > rejected.len() { "; ..." } else { "" }
                ),
            };
            Fatal::Config {
                file: s
                    .fx
                    .as_ref()
                    .map(|f| f.path.display().to_string())
                    .unwrap_or_default(),
                message: format!(
                    "no {}->{} rate on or before {} (the statement date): add one to convert the {} totals{note}",
                    m.from, m.to, m.on, m.from
                ),
            }
        }
        statements::StatementError::Overflow(o) => Fatal::Overflow {
            what: match &s.fx {
                Some(f) if o.what.contains(" rate ") => {
                    format!("{} ({})", o.what, f.path.display())
                }
                _ => o.what,
            },
            cause: o.cause,
        },
    }
}

/// The attainment files (with `--usage`).
fn write_other_outputs(
    s: &RunSettings,
    inputs: &Inputs,
    partner_usage: &[PartnerUsage],
    staging: &Staging,
) -> Result<(), Fatal> {
    if !inputs.usage.files.is_empty() {
        attainment::write_attainment(
            &staging.dir,
            &inputs.attainment,
            &inputs.usage.customer_names,
            s.period,
        )?;
        attainment::write_partner_attainment(&staging.dir, partner_usage, s.period)?;
    }
    console::phase_memory("attainment written");
    Ok(())
}

/// summary.json.
fn write_summary_json(
    s: &RunSettings,
    inputs: &Inputs,
    rows: &Rows,
    accounting: &RowAccounting,
    partner_usage: &[PartnerUsage],
    set: &StatementSet,
    staging: &Staging,
) -> Result<(), Fatal> {
    let usage = (!inputs.usage.files.is_empty())
        .then(|| summary::usage_json(&rows.usage, partner_usage, inputs, s.period));
    publish::write_json(
        &staging.files,
        &staging.dir.join("summary.json"),
        &SummaryJson {
            period: s.period.label(),
            statement_date: s.period.last_day().to_string(),
            rounding: set.rounding.as_str(),
            summary: &set.summary,
            totals: summary::totals_by_currency(set),
            rows: accounting,
            usage,
        },
    )
}

/// The monthly active users the history recorded for closed months (empty
/// without `--history`): the prior high-water marks of this run's months.
fn closed_marks(history: Option<&History>) -> Result<crate::attain::ClosedMarks, Fatal> {
    let mut closed = crate::attain::ClosedMarks::default();
    let Some(h) = history else {
        return Ok(closed);
    };
    for m in h.usage_marks()? {
        let month = crate::dates::Month::parse(&m.month);
        let mau = m.mau.parse::<rust_decimal::Decimal>();
        let (Some(month), Ok(mau)) = (month, mau) else {
            return Err(Fatal::Input(format!(
                "{}: the usage mark of {} / {} / {} has MAU '{}': not a month and a count; \
                 the history is damaged",
                h.path().display(),
                m.customer_id,
                m.workload,
                m.month,
                m.mau
            )));
        };
        closed.insert(&m.customer_id, &m.workload, month, mau);
    }
    Ok(closed)
}

/// With `--history`, when the period is closed: the adjustment statements
/// against `version`, its latest issued version (the CSVs; the PDFs come
/// with the others), and the adjustments for the PDFs.
fn restatement(
    s: &RunSettings,
    inputs: &Inputs,
    rows: &Rows,
    set: &StatementSet,
    h: &History,
    version: u32,
    staging: &Staging,
) -> Result<crate::history::adjust::Adjustments, Fatal> {
    let period = s.period.label();
    let mut now_inputs: Vec<FileRec> = summary::input_entries(inputs, &rows.streamed)
        .into_iter()
        .chain(fx_entry(s)?)
        .map(|f| FileRec {
            path: f.path,
            role: f.role.unwrap_or_default(),
            sha256: f.sha256,
            bytes: f.bytes,
        })
        .collect();
    now_inputs.sort_by(|a, b| (&a.role, &a.path).cmp(&(&b.role, &b.path)));
    let a = crate::history::adjust::compare(
        version,
        &h.lines(&period, version, None)?,
        &h.inputs(&period, version)?,
        &h.designations(&period, version)?,
        set,
        &now_inputs,
        &crate::history::adjust::designations_of(set),
    )?;
    crate::render::adjustment::write_adjustments(&staging.dir, &a, &staging.files)?;
    if !s.quiet {
        crate::say!(
            "porledger: {period} is closed (version {version}): this run restates it; {} statement lines differ (partners/<id>/adjustment.csv); `porledger close` records it as version {}",
            a.lines.len(),
            version + 1
        );
    }
    Ok(a)
}

/// The manifest entry of the `--fx` table.
fn fx_entry(s: &RunSettings) -> Result<Vec<FileEntry>, Fatal> {
    let Some(fx) = &s.fx else {
        return Ok(Vec::new());
    };
    let d = crate::ingest::sha256_file(&fx.path)?;
    Ok(vec![FileEntry {
        path: fx.path.to_string_lossy().into_owned(),
        sha256: d.sha256,
        bytes: d.bytes,
        role: Some("fx".into()),
        format: None,
    }])
}

/// The run summary on stderr.
fn print_summary(
    s: &RunSettings,
    inputs: &Inputs,
    rows: &Rows,
    accounting: &RowAccounting,
    issued: &Issued,
    rejected: u64,
) {
    let mut samples: Vec<Reject> = rows.early_rejects.iter().take(20).cloned().collect();
    let room = 20 - samples.len();
    samples.extend(rows.streamed.reject_samples.iter().take(room).cloned());
    let totals = summary::totals_by_currency(&issued.head);
    console::print_run_summary(&RunSummary {
        accounting,
        usage: (!inputs.usage.files.is_empty()).then_some(&rows.usage.total),
        reject_samples: &samples,
        rejected,
        totals: &totals,
        partners: issued.counts.partners,
        out: &s.out,
    });
}
