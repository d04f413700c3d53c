//! `porledger run`: load -> stream -> build statements -> render -> publish.

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
use crate::render::csv as rcsv;
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
    let renderer = s.pdf.as_ref().map(renderer).transpose()?;
    let closed = closed_marks(history.as_ref().and_then(Option::as_ref))?;
    let mut inputs = load(&s.inputs, &closed)?;
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
    let staging = Staging::new(&s.out)?;
    let mut rows = stream_rows(&s, &inputs, fx.as_ref(), &staging)?;
    let bar = &rows.bar;
    let t_stream = bar.elapsed();
    let (mut set, partner_usage) =
        pool.install(|| build_statements(&s, &inputs, &mut rows.streamed, fx.as_ref()))?;
    // A partner paid only through a reversal may be in no designation any
    // more: its statement carries the name the history issued it under.
    if let Some(Some(h)) = &history {
        statements::fill_partner_names(&mut set, &h.partner_names()?);
    }
    // The statements hold everything the groups said (`build` took the groups);
    // free the customer names too before the writing starts.
    let (_, customers) = rows.streamed.fold.release_groups();
    console::phase_memory("groups released");
    let acc = summary::accounting(&inputs, &rows.streamed);
    if !acc.total.balanced || !rows.usage.total.balanced {
        return Err(Fatal::Input(
            "internal error: row accounting does not add up; nothing was published".into(),
        ));
    }
    let dir = staging.dir.clone();
    let (run_history, adjustments) = match &history {
        None => (None, None),
        Some(h) => {
            let (rh, a) = restatement(&s, &inputs, &rows, &set, h.as_ref(), &staging)?;
            (Some(rh), a)
        }
    };
    let written = Written {
        set: &set,
        partner_usage: &partner_usage,
        accounting: &acc,
    };
    write_outputs(&s, &inputs, &written, &staging, &pool)?;
    let pdf_manifest = match &renderer {
        Some((r, o)) => {
            let mut m = pool.install(|| pdf::render_run(&dir, &set, r, *o, &staging.files))?;
            if let Some(a) = &adjustments {
                m.documents += pool.install(|| {
                    crate::render::adjustment::write_adjustment_pdfs(
                        &dir,
                        a,
                        &set,
                        r,
                        &staging.files,
                    )
                })?;
            }
            Some(m)
        }
        None => None,
    };
    console::phase_memory("PDFs written");
    write_summary_json(&s, &inputs, &rows, &written, &staging)?;
    let extra = fx_entry(&s)?;
    let t_statements = bar.elapsed();
    console::phase_memory("written");
    let period = s.period;
    summary::write_manifest(
        &staging,
        &inputs,
        &rows.streamed,
        &set,
        period,
        summary::ManifestExtras {
            inputs: extra,
            pdf: pdf_manifest,
            history: run_history,
        },
    )?;
    let t_manifest = bar.elapsed();
    staging.commit()?;
    console::timings(&Timings {
        stream: t_stream,
        statements: t_statements,
        manifest: t_manifest,
        total: bar.elapsed(),
        groups: rows.groups,
        customers,
    });
    let rejected = rows.early_rejects.len() as u64 + rows.streamed.rejects;
    if !s.quiet {
        print_summary(&s, &inputs, &rows, &written, rejected);
    }
    Ok(if rejected > 0 {
        Finish::WithRejects
    } else {
        Finish::Clean
    })
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
    let (table, rejects, _rows) = crate::ingest::fx::load_fx(&fx.path)?;
    Ok(Some(Fx {
        table,
        currency,
        rejects,
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
    if prior > s.max_rejects {
        if !s.quiet {
            console::print_rejects(&early_rejects[..early_rejects.len().min(20)], prior);
        }
        return Err(Fatal::TooManyRejects {
            count: prior,
            max: s.max_rejects,
        });
    }
    let bar = Bar::new(inputs.files.iter().map(|f| f.size).sum(), !s.quiet);
    let settings = s.inputs.stream(Some(s.period), Some(s.max_rejects));
    let streamed = pipeline::stream(inputs, &settings, &mut sink, &bar, prior);
    bar.finish();
    let mut streamed = streamed?;
    console::phase_memory("streamed");
    let usage = std::mem::take(&mut streamed.usage);
    sink.finish()?;
    if s.parquet_ledger {
        crate::render::parquet::convert_ledger(&staging.dir)?;
    }
    let groups = streamed.fold.details.len();
    Ok(Rows {
        streamed,
        usage,
        early_rejects,
        groups,
        bar,
    })
}

/// Builds the statements from the fold (converted with `--fx`) and attaches
/// the partners' usage attainment.
fn build_statements(
    s: &RunSettings,
    inputs: &Inputs,
    streamed: &mut Streamed,
    fx: Option<&Fx>,
) -> Result<(StatementSet, Vec<PartnerUsage>), Fatal> {
    let reporting = fx.map(|f| statements::Reporting {
        fx: &f.table,
        currency: f.currency,
    });
    let mut set = statements::build(
        &mut streamed.fold,
        &inputs.rules,
        &inputs.index,
        s.period,
        reporting.as_ref(),
    )
    .map_err(|e| match e {
        statements::StatementError::MissingRate(m) => Fatal::Config {
            file: s
                .fx
                .as_ref()
                .map(|f| f.path.display().to_string())
                .unwrap_or_default(),
            message: format!(
                "no {}->{} rate on or before {} (the statement date): add one to convert the {} totals",
                m.from, m.to, m.on, m.from
            ),
        },
        statements::StatementError::Overflow(o) => Fatal::Overflow {
            what: match &s.fx {
                Some(f) if o.what.contains(" rate ") => {
                    format!("{} ({})", o.what, f.path.display())
                }
                _ => o.what,
            },
            cause: o.cause,
        },
    })?;
    console::phase_memory("statements built");
    let partner_usage = if inputs.usage.files.is_empty() {
        Vec::new()
    } else {
        crate::attain::partner_usage(&inputs.usage_view(), s.period)
    };
    statements::attach_usage(&mut set, &partner_usage, &streamed.fold.tier_notes.to_vec());
    Ok((set, partner_usage))
}

/// The statements and what was counted, ready to be written.
struct Written<'a> {
    set: &'a StatementSet,
    partner_usage: &'a [PartnerUsage],
    accounting: &'a RowAccounting,
}

/// Writes the statement CSVs, summary.csv, journal.csv, the attainment files (with
/// `--usage`) and statements.json (serialised on the worker pool; the PDFs
/// come after, on it too).
fn write_outputs(
    s: &RunSettings,
    inputs: &Inputs,
    w: &Written,
    staging: &Staging,
    pool: &rayon::ThreadPool,
) -> Result<(), Fatal> {
    let (dir, files) = (&staging.dir, &staging.files);
    // Writing thousands of small files waits on the disk, not the CPU.
    let io_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(publish::IO_THREADS)
        .build()
        .map_err(|e| Fatal::Input(format!("cannot start I/O threads: {e}")))?;
    io_pool.install(|| rcsv::write_statements(dir, w.set, files))?;
    console::phase_memory("statement CSVs written");
    rcsv::write_summary(&dir.join("summary.csv"), w.set)?;
    crate::render::journal::write_journal(dir, w.set, &inputs.rules.journal, files)?;
    if !inputs.usage.files.is_empty() {
        attainment::write_attainment(
            dir,
            &inputs.attainment,
            &inputs.usage.customer_names,
            s.period,
        )?;
        attainment::write_partner_attainment(dir, w.partner_usage, s.period)?;
    }
    console::phase_memory("summary, journal and attainment written");
    pool.install(|| {
        crate::render::json::write_statements_json(files, &dir.join("statements.json"), w.set)
    })?;
    console::phase_memory("statements.json written");
    Ok(())
}

/// summary.json.
fn write_summary_json(
    s: &RunSettings,
    inputs: &Inputs,
    rows: &Rows,
    w: &Written,
    staging: &Staging,
) -> Result<(), Fatal> {
    let usage = (!inputs.usage.files.is_empty())
        .then(|| summary::usage_json(&rows.usage, w.partner_usage, inputs, s.period));
    publish::write_json(
        &staging.files,
        &staging.dir.join("summary.json"),
        &SummaryJson {
            period: s.period.label(),
            statement_date: s.period.last_day().to_string(),
            rounding: w.set.rounding.as_str(),
            summary: &w.set.summary,
            totals: summary::totals_by_currency(w.set),
            rows: w.accounting,
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

/// With `--history`: when the period is closed, the adjustment statements
/// against its latest issued version (the CSVs; the PDFs come with the
/// others), and the adjustments for the PDFs.
fn restatement(
    s: &RunSettings,
    inputs: &Inputs,
    rows: &Rows,
    set: &StatementSet,
    history: Option<&History>,
    staging: &Staging,
) -> Result<(RunHistory, Option<crate::history::adjust::Adjustments>), Fatal> {
    let period = s.period.label();
    let Some(h) = history else {
        return Ok((RunHistory { restates: None }, None));
    };
    let Some(version) = h.latest(&period)? else {
        return Ok((RunHistory { restates: None }, None));
    };
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
    );
    crate::render::adjustment::write_adjustments(&staging.dir, &a, &staging.files)?;
    if !s.quiet {
        eprintln!(
            "porledger: {period} is closed (version {version}): this run restates it; {} statement lines differ (partners/<id>/adjustment.csv); `porledger close` records it as version {}",
            a.lines.len(),
            version + 1
        );
    }
    Ok((
        RunHistory {
            restates: Some(version),
        },
        Some(a),
    ))
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
fn print_summary(s: &RunSettings, inputs: &Inputs, rows: &Rows, w: &Written, rejected: u64) {
    let mut samples: Vec<Reject> = rows.early_rejects.iter().take(20).cloned().collect();
    let room = 20 - samples.len();
    samples.extend(rows.streamed.reject_samples.iter().take(room).cloned());
    let totals = summary::totals_by_currency(w.set);
    console::print_run_summary(&RunSummary {
        accounting: w.accounting,
        usage: (!inputs.usage.files.is_empty()).then_some(&rows.usage.total),
        reject_samples: &samples,
        rejected,
        totals: &totals,
        partners: w.set.partners.len(),
        out: &s.out,
    });
}
