//! `porledger validate`: streams the inputs without writing anything and
//! prints a data-quality report to stdout.

use crate::cli::ValidateArgs;
use crate::cmd::{load, stdout_result, Finish};
use crate::console::{self, Layout, Report};
use crate::error::Fatal;
use crate::fold::CountsReport;
use crate::pipeline::{self, Inputs, StreamSettings, Streamed};
use crate::quality;
use crate::render::sink::NullSink;
use crate::render::summary::accounting;
use crate::settings::ValidateSettings;

pub fn validate(args: &ValidateArgs) -> Result<Finish, Fatal> {
    let s = ValidateSettings::new(args)?;
    let mut inputs = load(&s.inputs, &crate::attain::ClosedMarks::default())?;
    if let Some(p) = &args.history {
        if let Some(h) = crate::history::History::open_read(p)? {
            inputs.closed = Some(Box::new(crate::history::ClosedLookup::new(
                h,
                s.period.map(|p| p.label()),
            )?));
        }
    }
    // Nothing is written and no statement built: no groups, no output rows.
    let stream = StreamSettings {
        outputs: false,
        ..s.inputs.stream(s.period, None)
    };
    let streamed = pipeline::stream(&inputs, &stream, &mut NullSink, &console::NoBar, 0)?;
    let acc = accounting(&inputs, &streamed);
    let (problems, n_problems) = problems(&inputs, &streamed);
    let report = Report {
        accounting: &acc,
        layouts: layouts(&inputs),
        usage: usage_counts(&inputs, &streamed),
        with_period: s.period.is_some(),
        problems,
        n_problems,
        show: s.show,
    };
    // Names and IDs from the inputs reach the terminal escaped.
    let mut text = Vec::new();
    console::write_report(&mut text, &report).map_err(|e| Fatal::Input(e.to_string()))?;
    let text = String::from_utf8_lossy(&text);
    stdout_result(std::io::Write::write_all(
        &mut std::io::stdout().lock(),
        console::shown(&text).as_bytes(),
    ))?;
    Ok(if n_problems == 0 {
        Finish::Clean
    } else {
        Finish::WithRejects
    })
}

/// How each billing file is laid out.
fn layouts(inputs: &Inputs) -> Vec<Layout> {
    inputs
        .opened
        .iter()
        .zip(&inputs.files)
        .map(|(op, input)| Layout {
            kind: match op.layout.delimiter {
                _ if crate::ingest::parquet::is_parquet(&input.path) => "Parquet",
                b';' => "semicolon-separated",
                b'\t' => "tab-separated",
                _ => "comma-separated",
            },
            decimal_comma: op.layout.decimal_comma,
        })
        .collect()
}

/// The usage files' counts (what would accrue, with a period), with `--usage`.
fn usage_counts(inputs: &Inputs, streamed: &Streamed) -> Option<Vec<CountsReport>> {
    (!inputs.usage.files.is_empty()).then(|| streamed.usage.files.clone())
}

/// The problems to list (rejects, then designation issues) and how many
/// there are in all.
fn problems(inputs: &Inputs, streamed: &Streamed) -> (Vec<String>, u64) {
    let issues = quality::check_designations(inputs.index.rows(), &inputs.designations_display);
    let mut problems: Vec<String> = inputs
        .designations
        .rejects
        .iter()
        .chain(&inputs.usage.rejects)
        .chain(&streamed.reject_samples)
        .map(console::reject_line)
        .collect();
    problems.extend(issues.iter().map(|i| i.to_string()));
    let spellings = crate::pipeline::partner_spelling_problems(inputs, &streamed.fold);
    let n = inputs.designations.rejects.len() as u64
        + inputs.usage.rejects.len() as u64
        + streamed.rejects
        + issues.len() as u64
        + spellings.len() as u64;
    problems.extend(spellings);
    (problems, n)
}
