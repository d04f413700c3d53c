//! Everything the commands print for a person: the progress bar, the run
//! summary on stderr, reject samples, the `validate` report, and the
//! `PORLEDGER_TIMINGS` lines. Fatal errors are printed by `main` alone.

use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::fold::CountsReport;
use crate::ingest::designations::Reject;
use crate::pipeline::Progress;
use crate::render::summary::{CurrencyAmount, RowAccounting};

/// Writes one line to stderr, like `eprintln!`, but a line that cannot be
/// written (stderr a closed pipe, a full disk) is dropped: what a command
/// did, and its exit code, never depend on whether its messages could be
/// shown (`eprintln!` panics there, exit 101, after or before publishing).
///
/// The message is one line: a newline in it (from a name or ID it quotes)
/// is shown escaped, like the other characters of [`one_line`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let line = format!($($arg)*);
        let _ = writeln!(std::io::stderr(), "{}", $crate::console::one_line(&line));
    }};
}

/// Whether `c` is written as a `\u{..}` escape on a terminal: control
/// characters but newline and tab (an escape sequence in a partner name
/// could clear the screen or recolour what follows), the bidirectional
/// overrides and isolates (which reorder what follows them), the invisible
/// direction marks (LRM, RLM, ALM) and the Unicode line and paragraph
/// separators.
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `text` with the characters `escaped` picks written as `\u{..}` escapes.
fn escape(text: &str, escaped: impl Fn(char) -> bool) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(&escaped) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if escaped(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `text` as it may reach a terminal: control characters but newline and
/// tab (an escape sequence in a partner name could clear the screen or
/// recolour what follows) and the bidirectional overrides (which reorder
/// what follows them) are written as `\u{..}` escapes. Names and IDs come
/// from the inputs; the files porledger writes keep them as they are.
///
/// Newlines are kept: `text` is taken to be porledger's own lines. Text
/// that quotes names or IDs is built a line at a time ([`Lines`],
/// [`one_line`]), so that a newline in a name cannot start a line of its
/// own.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    escape(text, hidden)
}

/// One line of text as it may reach a terminal: what [`shown`] escapes,
/// and newlines too (`\u{a}`). A name or ID from the inputs may hold a
/// newline (a CSV field may be quoted across lines), a carriage return,
/// NEL (U+0085) or a line separator; none of them may break the line that
/// quotes it, or the rest of the name could pass for a line of porledger's
/// own (`sum of 1 exact amounts ... (matches the statement)`).
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    escape(text, |c| c == '\n' || hidden(c))
}

/// Text for a terminal, built a line at a time with `writeln!` (an
/// inherent `write_fmt`, not [`std::fmt::Write`]): each call writes exactly
/// one line, shown as [`one_line`] shows it, so a newline inside a value it
/// quotes is escaped and never starts a line. `writeln!(lines)` writes an
/// empty line; a newline in the format string itself, anywhere but at its
/// end, is escaped like any other (write a line per call instead).
#[derive(Debug, Default)]
pub struct Lines {
    text: String,
}

impl Lines {
    pub fn new() -> Lines {
        Lines::default()
    }

    /// Writes `args` as one line (one trailing newline, which `writeln!`
    /// adds, ends it; the line is ended in any case).
    pub fn write_fmt(&mut self, args: std::fmt::Arguments<'_>) {
        let owned;
        let line = match args.as_str() {
            Some(s) => s,
            None => {
                owned = args.to_string();
                &owned
            }
        };
        let line = line.strip_suffix('\n').unwrap_or(line);
        self.text.push_str(&one_line(line));
        self.text.push('\n');
    }

    /// Appends lines built elsewhere.
    pub fn append(&mut self, other: Lines) {
        self.text.push_str(&other.text);
    }

    /// The text, every line ended by a newline.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn into_string(self) -> String {
        self.text
    }
}

/// A partner ID as a message names it when it may have a look-alike: as
/// written (to be searched for in the file), and when it holds characters
/// beyond ASCII, with those as `\u{..}` too: `R-K (R-\u{212a})`, whose
/// Kelvin sign is not the `K` of `R-K`, though both are one ID.
pub fn spelled(id: &str) -> std::borrow::Cow<'_, str> {
    match escape(id, |c| !c.is_ascii()) {
        std::borrow::Cow::Owned(escaped) => std::borrow::Cow::Owned(format!("{id} ({escaped})")),
        borrowed => borrowed,
    }
}

/// `1234567` -> `1,234,567`.
/// `N refused (rejected against closed charges), ` for a credit count, or
/// nothing when none was.
fn refused(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!("{} refused against one (see the rejects), ", group(n)),
    }
}

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

/// Whether `PORLEDGER_TIMINGS` asks for timing and memory lines.
fn timings_wanted() -> bool {
    std::env::var_os("PORLEDGER_TIMINGS").is_some()
}

/// When the process started its work ([`start_clock`]), for the phase lines.
static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Starts the clock the `memory:` phase lines are timed by (`main`, first).
pub fn start_clock() {
    START.get_or_init(Instant::now);
}

/// With `PORLEDGER_TIMINGS` set, prints the resident and peak memory at the end
/// of a phase (Linux; elsewhere nothing) and the time since [`start_clock`].
pub fn phase_memory(phase: &str) {
    if !timings_wanted() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let at = START.get_or_init(Instant::now).elapsed();
    crate::say!(
        "{} at {:.2} s",
        memory_line(phase, &status),
        at.as_secs_f64()
    );
}

/// The `memory:` line of a phase from the text of /proc/self/status.
fn memory_line(phase: &str, status: &str) -> String {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "memory: {phase}: rss {}, peak {}",
        field("VmRSS:"),
        field("VmHWM:")
    )
}

/// Where the time of a run went (`PORLEDGER_TIMINGS`).
pub struct Timings {
    pub stream: Duration,
    pub statements: Duration,
    pub statement_stages: StatementStages,
    pub manifest: Duration,
    pub total: Duration,
    pub groups: usize,
    pub customers: usize,
}

/// The wall time of building and writing the partners' statements, split
/// three ways that add up to it. (The `statements` time of [`Timings`] is
/// since the start: it also holds the stream before them and the other
/// outputs after them.)
#[derive(Clone, Copy, Default)]
pub struct StatementStages {
    /// Waiting for the next partner's groups (the merge of the spilled runs).
    pub merge: Duration,
    /// Building statements from groups (on the pool).
    pub build: Duration,
    /// Writing a batch's CSVs, `statements.json` part, journal lines and PDFs,
    /// then the files written once at the end.
    pub write: Duration,
}

/// With `PORLEDGER_TIMINGS` set, prints the run's `timings:` line: times
/// since the start, and in parentheses the merge, build and write time of
/// the statements themselves.
pub fn timings(t: &Timings) {
    if timings_wanted() {
        let st = &t.statement_stages;
        crate::say!(
            "timings: stream {:?}, statements {:?} (merge {:?}, build {:?}, write {:?}), manifest {:?}, total {:?}, groups {}, customers {}",
            t.stream, t.statements, st.merge, st.build, st.write, t.manifest, t.total, t.groups, t.customers
        );
    }
}

/// The wall time of each stage of `porledger tieout` (durations, not times
/// since the start). The two sides are read at once, one on each thread.
#[derive(Clone, Copy, Default)]
pub struct TieoutTimings {
    /// Reading the earnings files into the tie-out.
    pub earnings: Duration,
    /// Reading the run's ledger into its own accumulator, beside them.
    pub ledger: Duration,
    /// Taking the ledger's accruals into the tie-out (one thread).
    pub join: Duration,
    /// Reading the run's not-eligible rows (and the history's issued accruals).
    pub rest: Duration,
    /// Grouping, sorting and counting the grains, until the first rows are
    /// handed to the writer.
    pub sort: Duration,
    /// Classifying the rows and writing them, batch by batch.
    pub write: Duration,
    /// tieout.json, rejects.csv, the manifest and the atomic publish.
    pub publish: Duration,
    pub total: Duration,
    pub earnings_rows: u64,
    pub rows: u64,
}

/// With `PORLEDGER_TIMINGS` set, prints the tie-out's `timings:` line.
pub fn tieout_timings(t: &TieoutTimings) {
    if timings_wanted() {
        crate::say!(
            "timings: tieout read (earnings {:?}, ledger {:?}), join {:?}, not-eligible and history {:?}, sort and count {:?}, classify and write {:?}, publish {:?}, total {:?}, earnings rows {}, tie-out rows {}",
            t.earnings, t.ledger, t.join, t.rest, t.sort, t.write, t.publish, t.total, t.earnings_rows, t.rows
        );
    }
}

/// A progress hook that draws nothing but still reports phase memory
/// (`validate`).
pub struct NoBar;

impl Progress for NoBar {
    fn phase(&self, name: &str) {
        phase_memory(name);
    }
}

/// The progress bar on stderr: drawn only when stderr is a terminal and the
/// command is not `--quiet`.
pub struct Bar {
    bar: indicatif::ProgressBar,
    rows: AtomicU64,
    start: Instant,
}

impl Bar {
    pub fn new(total_bytes: u64, visible: bool) -> Bar {
        let target = if visible && io::stderr().is_terminal() {
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

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Time since the bar was created (the start of the stream).
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
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

    fn phase(&self, name: &str) {
        phase_memory(name);
    }
}

/// `file:line column 'c' value 'v': reason`.
pub fn reject_line(r: &Reject) -> String {
    format!(
        "{}:{} column '{}' value '{}': {}",
        r.file, r.line, r.column, r.value, r.reason
    )
}

/// The first rejects, and how many there are in all.
pub fn print_rejects(samples: &[Reject], total: u64) {
    if samples.is_empty() {
        return;
    }
    crate::say!("first rejects ({} in all):", group(total));
    for r in samples {
        crate::say!("  {}", reject_line(r));
    }
}

/// `a 1, b 2` for the non-zero counts of a reason map.
fn reasons<'a>(by_reason: impl IntoIterator<Item = (&'a &'static str, &'a u64)>) -> Vec<String> {
    by_reason
        .into_iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{r} {}", group(*n)))
        .collect()
}

/// The row accounting lines of a run.
pub fn accounting_lines(acc: &RowAccounting) -> Vec<String> {
    let t = &acc.total;
    let mut lines = vec![format!(
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
    )];
    let r = reasons(&t.not_eligible_by_reason);
    if !r.is_empty() {
        lines.push(format!("not eligible: {}", r.join(", ")));
    }
    if t.dated_after_period > 0 {
        lines.push(format!(
            "warning: {} charges are dated after the end of the period",
            group(t.dated_after_period)
        ));
    }
    if let Some(c) = &t.credits_against_history {
        lines.push(format!(
            "credits against closed months: {} matched a closed charge, {}{} matched none",
            group(c.matched),
            refused(c.refused),
            group(c.unmatched)
        ));
    }
    let d = &acc.designations;
    lines.push(format!(
        "designations: {} rows = {} accepted + {} rejected",
        group(d.rows),
        group(d.accepted),
        group(d.rejected)
    ));
    lines
}

/// What `run` tells a person at the end (unless `--quiet`).
pub struct RunSummary<'a> {
    pub accounting: &'a RowAccounting,
    /// The usage rows, with `--usage`.
    pub usage: Option<&'a CountsReport>,
    pub reject_samples: &'a [Reject],
    pub rejected: u64,
    pub totals: &'a [CurrencyAmount],
    pub partners: usize,
    pub out: &'a Path,
}

/// The lines of the run summary.
pub fn run_summary_lines(s: &RunSummary) -> Vec<String> {
    let mut lines = accounting_lines(s.accounting);
    if let Some(t) = s.usage {
        lines.push(format!(
            "usage rows: {} read = {} accrued + {} not eligible + {} rejected",
            group(t.rows),
            group(t.accrued),
            group(t.not_eligible),
            group(t.rejected)
        ));
    }
    if !s.reject_samples.is_empty() {
        lines.push(format!("first rejects ({} in all):", group(s.rejected)));
        lines.extend(
            s.reject_samples
                .iter()
                .map(|r| format!("  {}", reject_line(r))),
        );
    }
    for t in s.totals {
        lines.push(format!("accrued: {} {}", t.currency, t.accrual_amount));
    }
    lines.push(format!(
        "published {} partner statements to {}",
        s.partners,
        s.out.display()
    ));
    lines
}

/// Prints the run summary on stderr.
pub fn print_run_summary(s: &RunSummary) {
    for l in run_summary_lines(s) {
        crate::say!("{l}");
    }
}

/// `porledger render`'s line.
pub fn print_rendered(documents: usize, locale: &str, template: &str, out: &Path) {
    crate::say!(
        "rendered {documents} PDF statements ({locale}, template {template}) to {}",
        out.display()
    );
}

/// What `porledger sample` wrote, for its summary line.
pub struct SampleWritten<'a> {
    pub files: usize,
    pub rows: u64,
    pub customers: u64,
    pub slots: u64,
    pub partners: usize,
    pub first_month: &'a str,
    pub last_month: &'a str,
    pub bytes: u64,
}

/// `porledger sample`'s line.
pub fn print_sample(w: &SampleWritten, out: &Path) {
    let g = group;
    crate::say!(
        "sample: wrote {} billing file{} with {} rows ({} customers, {} subscription slots, \
         {} partners, charges {}..{}), {} bytes in all, to {}",
        w.files,
        if w.files == 1 { "" } else { "s" },
        g(w.rows),
        g(w.customers),
        g(w.slots),
        w.partners,
        w.first_month,
        w.last_month,
        g(w.bytes),
        out.display()
    );
}

/// How one billing file is laid out, for the `validate` report.
pub struct Layout {
    /// `comma-separated`, `semicolon-separated`, `tab-separated` or `Parquet`.
    pub kind: &'static str,
    pub decimal_comma: bool,
}

/// The `validate` report, computed; [`write_report`] prints it.
pub struct Report<'a> {
    pub accounting: &'a RowAccounting,
    /// One per billing file, in the order of `accounting.billing`.
    pub layouts: Vec<Layout>,
    /// The usage files' counts, with `--usage`.
    pub usage: Option<Vec<CountsReport>>,
    /// Whether a period was given (usage counts then say what would accrue).
    pub with_period: bool,
    /// The problems to list (at least the first `show` of them).
    pub problems: Vec<String>,
    /// How many problems there are in all.
    pub n_problems: u64,
    /// `--show`.
    pub show: usize,
}

/// The billing section of the report.
fn billing_lines(r: &Report, lines: &mut Vec<String>) {
    lines.push("billing files:".into());
    for (f, l) in r.accounting.billing.iter().zip(&r.layouts) {
        lines.push(format!(
            "  {}: {} ({}{}), {} rows: {} would accrue, {} not eligible, {} rejected",
            f.file,
            f.format,
            l.kind,
            if l.decimal_comma {
                ", decimal commas or points"
            } else {
                ""
            },
            group(f.rows),
            group(f.accrued),
            group(f.not_eligible),
            group(f.rejected)
        ));
    }
    let t = &r.accounting.total;
    let reasons = reasons(&t.not_eligible_by_reason);
    if !reasons.is_empty() {
        lines.push(format!("  not eligible by reason: {}", reasons.join(", ")));
    }
    let matched: Vec<String> = t
        .designation_matched_on
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(column, n)| format!("{column} {}", group(*n)))
        .collect();
    if !matched.is_empty() {
        lines.push(format!(
            "  subscription designations matched lines on: {}",
            matched.join(", ")
        ));
    }
    if t.dated_after_period > 0 {
        lines.push(format!(
            "  warning: {} charges dated after the end of the period",
            group(t.dated_after_period)
        ));
    }
    for f in r.accounting.billing.iter().chain([t]) {
        if let Some(c) = &f.credits_against_history {
            lines.push(format!(
                "  credits against closed months, {}: {} match a closed charge, {}{} match none",
                f.file,
                group(c.matched),
                refused(c.refused),
                group(c.unmatched)
            ));
        }
    }
}

/// One usage file's line of the report.
fn usage_line(c: &CountsReport, with_period: bool) -> String {
    let mut line = format!(
        "  {}: {}, {} rows, {} rejected",
        c.file,
        c.format,
        group(c.rows),
        group(c.rejected)
    );
    if with_period {
        let reasons = reasons(&c.not_eligible_by_reason);
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
    line
}

/// The problems section of the report.
fn problem_lines(r: &Report, lines: &mut Vec<String>) {
    lines.push(String::new());
    if r.n_problems == 0 {
        lines.push("no problems found".into());
        return;
    }
    let noun = if r.n_problems == 1 {
        "problem"
    } else {
        "problems"
    };
    lines.push(format!("{} {noun}:", group(r.n_problems)));
    for p in r.problems.iter().take(r.show) {
        lines.push(format!("  {p}"));
    }
    if (r.show as u64) < r.n_problems {
        lines.push(format!(
            "  ... {} more (raise --show to list them)",
            group(r.n_problems - r.show.min(r.problems.len()) as u64)
        ));
    }
}

/// The lines of the `validate` report.
pub fn report_lines(r: &Report) -> Vec<String> {
    let mut lines = vec!["porledger data-quality report".into(), String::new()];
    billing_lines(r, &mut lines);
    let d = &r.accounting.designations;
    lines.push(String::new());
    lines.push(format!(
        "designations: {}: {} rows, {} usable, {} rejected",
        d.file,
        group(d.rows),
        group(d.accepted),
        group(d.rejected)
    ));
    if let Some(usage) = &r.usage {
        lines.push(String::new());
        lines.push("usage files:".into());
        lines.extend(usage.iter().map(|c| usage_line(c, r.with_period)));
    }
    problem_lines(r, &mut lines);
    lines
}

/// Writes the `validate` report, each line as [`one_line`] shows it (a
/// problem quotes names and values from the inputs).
pub fn write_report(o: &mut impl Write, r: &Report) -> io::Result<()> {
    for l in report_lines(r) {
        writeln!(o, "{}", one_line(&l))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What reaches a terminal: escape sequences and bidirectional overrides
    /// from a name are shown escaped; newlines, tabs and other text as they
    /// are.
    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(
            shown("P1  Müller GmbH\tEUR 4.00\n"),
            "P1  Müller GmbH\tEUR 4.00\n"
        );
        assert!(matches!(shown("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            shown("Evil\u{1b}[2J\u{1b}[31mRED\u{7}"),
            "Evil\\u{1b}[2J\\u{1b}[31mRED\\u{7}"
        );
        assert_eq!(shown("a\u{202e}b\rc"), "a\\u{202e}b\\u{d}c");
        assert_eq!(
            shown("x\u{200f}y\u{2028}z\u{61c}"),
            "x\\u{200f}y\\u{2028}z\\u{61c}"
        );
        assert_eq!(spelled("R-\u{212a}"), "R-\u{212a} (R-\\u{212a})");
        assert_eq!(spelled("Müller-1"), "Müller-1 (M\\u{fc}ller-1)");
        assert!(matches!(spelled("R-K"), std::borrow::Cow::Borrowed("R-K")));
    }

    /// A value's line breaks of every kind are escaped by `one_line`, so the
    /// value stays on the line that quotes it; tabs and other text are kept.
    #[test]
    fn one_line_escapes_every_line_break() {
        assert_eq!(
            one_line("Evil\n  sum of 1 exact amounts\r\nx\ry\u{85}z\u{2028}a\u{2029}b"),
            "Evil\\u{a}  sum of 1 exact amounts\\u{d}\\u{a}x\\u{d}y\\u{85}z\\u{2028}a\\u{2029}b"
        );
        assert_eq!(one_line("a\tb\u{1b}[2J\u{202e}"), "a\tb\\u{1b}[2J\\u{202e}");
        assert!(matches!(
            one_line("Müller GmbH"),
            std::borrow::Cow::Borrowed(_)
        ));
        // Escaped text is left as it is (escaping twice changes nothing).
        let once = one_line("a\nb").into_owned();
        assert_eq!(one_line(&once), once);
        assert_eq!(shown(&once), once);
    }

    /// Each `writeln!` into `Lines` is one line: a newline inside a value is
    /// escaped, an empty `writeln!` is an empty line, and text without line
    /// breaks reads as with `String`.
    #[test]
    fn lines_are_one_line_per_writeln() {
        let name = "Evil GmbH\n  sum of 1 exact amounts 0.00 (matches the statement)";
        let mut l = Lines::new();
        let (partner, currency, total) = ("P-1", "EUR", 4);
        writeln!(l, "Partner {partner} ({name})");
        writeln!(l);
        writeln!(l, "total {currency}: {total}");
        let value_ending_in_newline = "s-1\n";
        writeln!(l, "subscription {value_ending_in_newline}");
        let mut more = Lines::new();
        writeln!(more, "{:<6}|", "ab");
        l.append(more);
        assert_eq!(
            l.as_str(),
            "Partner P-1 (Evil GmbH\\u{a}  sum of 1 exact amounts 0.00 (matches the statement))\n\
             \n\
             total EUR: 4\n\
             subscription s-1\\u{a}\n\
             ab    |\n"
        );
        assert_eq!(l.into_string().lines().count(), 5);
    }

    /// A problem or reject quoting a value with a newline is one line of the
    /// `validate` report.
    #[test]
    fn report_lines_are_written_one_line_each() {
        let acc = accounting();
        let r = Report {
            accounting: &acc,
            layouts: vec![Layout {
                kind: "comma-separated",
                decimal_comma: false,
            }],
            usage: None,
            with_period: false,
            problems: vec!["d.csv:2 column 'share' value '0.5\nno problems found': x".into()],
            n_problems: 1,
            show: 50,
        };
        let mut out = Vec::new();
        write_report(&mut out, &r).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                "1 problem:\n  d.csv:2 column 'share' value '0.5\\u{a}no problems found': x\n"
            ),
            "{text}"
        );
    }

    use crate::render::summary::{DesignationRows, FileRows};
    use std::collections::BTreeMap;

    #[test]
    fn group_inserts_thousands_separators() {
        assert_eq!(group(0), "0");
        assert_eq!(group(7), "7");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(123_456), "123,456");
        assert_eq!(group(1_234_567), "1,234,567");
        assert_eq!(group(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn memory_line_reads_rss_and_peak() {
        let status = "Name:\tporledger\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        assert_eq!(
            memory_line("streamed", status),
            "memory: streamed: rss 1024 kB, peak 2048 kB"
        );
        assert_eq!(memory_line("x", ""), "memory: x: rss , peak ");
    }

    fn rows(file: &str, n: u64, rejected: u64) -> FileRows {
        let mut by_reason = BTreeMap::new();
        by_reason.insert("expired", 1);
        by_reason.insert("zero", 0);
        FileRows {
            file: file.into(),
            format: "new-commerce".into(),
            rows: n,
            accrued: n - 1 - rejected,
            not_eligible: 1,
            not_eligible_by_reason: by_reason,
            rejected,
            dated_after_period: 0,
            designation_matched_on: BTreeMap::from([("EntitlementId", 3), ("SubscriptionId", 0)]),
            balanced: true,
            credits_against_history: None,
        }
    }

    fn accounting() -> RowAccounting {
        RowAccounting {
            billing: vec![rows("a.csv", 1500, 2)],
            total: rows("(all billing files)", 1500, 2),
            designations: DesignationRows {
                file: "d.csv".into(),
                rows: 10,
                accepted: 9,
                rejected: 1,
            },
            fx: None,
        }
    }

    fn reject() -> Reject {
        Reject {
            file: "a.csv".into(),
            line: 7,
            column: "Quantity".into(),
            value: "x".into(),
            reason: "not a number".into(),
        }
    }

    #[test]
    fn run_summary_reads_like_before() {
        let acc = accounting();
        let samples = [reject()];
        let totals = [CurrencyAmount {
            currency: "EUR".into(),
            accrual_amount: "12.50".into(),
        }];
        let s = RunSummary {
            accounting: &acc,
            usage: None,
            reject_samples: &samples,
            rejected: 3,
            totals: &totals,
            partners: 4,
            out: Path::new("out"),
        };
        assert_eq!(
            run_summary_lines(&s),
            [
                "rows: 1,500 read = 1,497 accrued + 1 not eligible + 2 rejected",
                "not eligible: expired 1",
                "designations: 10 rows = 9 accepted + 1 rejected",
                "first rejects (3 in all):",
                "  a.csv:7 column 'Quantity' value 'x': not a number",
                "accrued: EUR 12.50",
                "published 4 partner statements to out",
            ]
        );
    }

    #[test]
    fn report_lists_problems_up_to_show() {
        let acc = accounting();
        let r = Report {
            accounting: &acc,
            layouts: vec![Layout {
                kind: "semicolon-separated",
                decimal_comma: true,
            }],
            usage: None,
            with_period: false,
            problems: vec!["p1".into(), "p2".into(), "p3".into()],
            n_problems: 3,
            show: 2,
        };
        let mut out = Vec::new();
        write_report(&mut out, &r).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "porledger data-quality report\n\nbilling files:\n  \
             a.csv: new-commerce (semicolon-separated, decimal commas or points), 1,500 rows: \
             1,497 would accrue, 1 not eligible, 2 rejected\n  \
             not eligible by reason: expired 1\n  \
             subscription designations matched lines on: EntitlementId 3\n\n\
             designations: d.csv: 10 rows, 9 usable, 1 rejected\n\n\
             3 problems:\n  p1\n  p2\n  ... 1 more (raise --show to list them)\n"
        );
    }

    #[test]
    fn report_without_problems_says_so() {
        let acc = accounting();
        let r = Report {
            accounting: &acc,
            layouts: vec![Layout {
                kind: "comma-separated",
                decimal_comma: false,
            }],
            usage: None,
            with_period: false,
            problems: Vec::new(),
            n_problems: 0,
            show: 50,
        };
        let lines = report_lines(&r);
        assert_eq!(lines.last().map(String::as_str), Some("no problems found"));
    }
}
